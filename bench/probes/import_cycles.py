#!/usr/bin/env python3
"""Prints the import cycles between daemon-runtime's modules (files), as strongly connected
components of `crate::` and `super::` references outside tests; nothing when there are none.
Usage: run it from daemon-runtime/src."""
import re,os,glob,collections,sys
deps=collections.defaultdict(set)
def modname(path):
    p=path[:-3]
    if p.endswith('/mod'): p=p[:-4]
    return p.replace('/','::')
files=[f for f in glob.glob('**/*.rs',recursive=True)]
mods=set(modname(f) for f in files)
for f in files:
    m=modname(f)
    s=open(f).read()
    i=s.find('#[cfg(test)]')
    if i>=0: s=s[:i]
    refs=set(re.findall(r'crate::([a-z_]+(?:::[a-z_]+)*)', s))
    for ref in re.findall(r'\bsuper::([a-z_]+(?:::[a-z_]+)*)', s):
        parent='::'.join(m.split('::')[:-1])
        refs.add((parent+'::' if parent else '')+ref)
    # use blocks: crate::{a, b::c}
    for blk in re.findall(r'crate::\{([^}]*)\}', s):
        for part in blk.split(','):
            refs.add(part.strip().split('::{')[0])
    for r in refs:
        parts=r.split('::')
        for k in range(len(parts),0,-1):
            cand='::'.join(parts[:k])
            if cand in mods:
                if cand!=m: deps[m].add(cand)
                break
g={m:deps[m] for m in mods}
idx={};low={};st=[];on=set();res=[];c=[0]
sys.setrecursionlimit(10000)
def sc(v):
    idx[v]=low[v]=c[0];c[0]+=1;st.append(v);on.add(v)
    for w in g[v]:
        if w not in idx: sc(w);low[v]=min(low[v],low[w])
        elif w in on: low[v]=min(low[v],idx[w])
    if low[v]==idx[v]:
        comp=[]
        while True:
            w=st.pop();on.discard(w);comp.append(w)
            if w==v:break
        if len(comp)>1: res.append(sorted(comp))
for v in sorted(mods):
    if v not in idx: sc(v)
for r in res:
    print(r)
    for a in r:
        print("  ",a,"->",sorted(x for x in g[a] if x in r))
