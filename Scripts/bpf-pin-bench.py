# A small `show` with --engine syscalls against --engine bpf, the BPF program taken from its pin
# and loaded with libbpf: medians of RUNS interleaved runs of each (BENCHMARKS.md). As root, with
# bpffs mounted at /sys/fs/bpf; to leave the host as it is, in a mount namespace of its own:
#   unshare -m sh -c 'mount -t bpf bpf /sys/fs/bpf && python3 Scripts/bpf-pin-bench.py PAGESTAT RUNS'
# The target is this script's own process, holding a 64-page memfd with every other page written.
import os, mmap, subprocess, sys, time, statistics
pagestat, runs = sys.argv[1], int(sys.argv[2])
fd = os.memfd_create("small")
os.ftruncate(fd, 64 * 4096)
m = mmap.mmap(fd, 64 * 4096)
for i in range(0, 64, 2): m[i*4096] = 1
pid = os.getpid()
maps = open("/proc/self/maps").read()
start = next(l.split("-")[0] for l in maps.splitlines() if "memfd:small" in l)
def t(args, env):
    e = dict(os.environ); e.update(env)
    t0 = time.perf_counter(); r = subprocess.run([pagestat] + args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=e); dt = time.perf_counter() - t0
    assert r.returncode == 0, r
    return dt * 1000
cases = {
  "syscalls": (["show", "--pid", str(pid), "--range", f"0x{start}+256K", "--engine", "syscalls"], {}),
  "bpf, pinned (second run)": (["show", "--pid", str(pid), "--range", f"0x{start}+256K", "--engine", "bpf"], {}),
  "bpf, libbpf load (PAGESTAT_BPF_PIN_ROOT=off)": (["show", "--pid", str(pid), "--range", f"0x{start}+256K", "--engine", "bpf"], {"PAGESTAT_BPF_PIN_ROOT": "off"}),
  "whole process, syscalls": (["show", "--pid", str(pid), "--engine", "syscalls"], {}),
  "whole process, bpf pinned": (["show", "--pid", str(pid), "--engine", "bpf"], {}),
  "whole process, bpf libbpf load": (["show", "--pid", str(pid), "--engine", "bpf"], {"PAGESTAT_BPF_PIN_ROOT": "off"}),
}
for a, e in cases.values(): t(a, e)  # warm up; the first bpf run pins
res = {k: [] for k in cases}
for _ in range(runs):
    for k, (a, e) in cases.items(): res[k].append(t(a, e))
with open("/proc/loadavg") as f: load = f.read().split()[:3]
print(f"runs {runs} each, interleaved; load average {' '.join(load)}")
base = statistics.median(res["syscalls"]); wbase = statistics.median(res["whole process, syscalls"])
for k, v in res.items():
    med = statistics.median(v)
    ref = wbase if k.startswith("whole") else base
    print(f"{k:48s} median {med:7.2f} ms  min {min(v):7.2f}  ({med/ref:.2f}x syscalls)")
