#[daemon::main]
fn main() {}

#[daemon::on_accept]
async fn serve(_conn: daemon::Connection) -> std::io::Result<()> {
    Ok(())
}

mod jobs {
    // The serving pool is `main` in `status` and the metrics: a group may not take its name.
    #[daemon::task(workers = 2)]
    fn main(ctx: &daemon::Task) {
        let _ = ctx.stopping();
    }

    #[daemon::task]
    fn supervised(ctx: &daemon::Task) {
        let _ = ctx.stopping();
    }
}
