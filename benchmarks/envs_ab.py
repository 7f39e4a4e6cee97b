"""Framework versions side by side in package environments (bench/runner/envs.py): an A/A and a
real version A/B, measured through the harness's own `run --config` with `[envs.*]` tables.

A benchmark of the harness, run by hand (never a test) on a quiet machine, in chunks.

collect: one chunk = one pair of environments x one model, `--rounds N` fresh processes per cell
  (round robin over the pair's two cells, so slow drift of the host hits both alike), into
  DIR/results/<pair>-<model>-<label>. Before it, each environment is built (or found) and the
  build recorded in DIR/builds.jsonl: first build seconds, a second (cached) call's seconds, the
  environment's apparent size. Pairs:
  - aa: jax 0.10.2 + optax 0.2.8 twice, each built in its own cache (two separate builds of
    identical pins): every cell should read "unchanged";
  - jax: jax 0.9.2 vs 0.10.2 (optax 0.2.8 with both);
  - tf: tensorflow 2.20.0 + keras 3.x vs tensorflow 2.21.0 + keras 3.15.1 (if time).

report: per chunk, the head/base ratio of train samples/s with its 95% interval and verdict
  (bench.decide.compare, unpaired: the two environments' processes alternate in one run),
  tensor-level memory, accuracy and kernel label per side, the packages that differ; then which
  differences hold in every run of the same pair and model.

  python benchmarks/envs_ab.py collect --out results/envs_ab --pair jax -m lstm128 --label r1
  python benchmarks/envs_ab.py report results/envs_ab --md results/published/envs-ab-HOST-DATE.md
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import envinfo  # noqa: E402  (imports no framework)
from bench.decide import compare  # noqa: E402
from bench.records import results  # noqa: E402
from bench.records.record import Record, env_name  # noqa: E402
from bench.runner import envs  # noqa: E402

PAIRS: dict[str, tuple[tuple[str, tuple[str, ...], str], tuple[str, tuple[str, ...], str]]] = {
    # (name, packages, cache subdirectory): the A/A's two sides are built in two caches
    "aa": (("aa1", ("jax==0.10.2", "optax==0.2.8"), "cache-aa1"), ("aa2", ("jax==0.10.2", "optax==0.2.8"), "cache-aa2")),
    "jax": (("jax092", ("jax==0.9.2", "optax==0.2.8"), "cache"), ("jax0102", ("jax==0.10.2", "optax==0.2.8"), "cache")),
    "tf": (("tf220", ("tensorflow==2.20.0", "keras==3.15.1"), "cache"),
           ("tf221", ("tensorflow==2.21.0", "keras==3.15.1"), "cache")),
}
FRAMEWORK = {"aa": "jax", "jax": "jax", "tf": "tf"}


def config_text(pair: str, model: str, out: Path, batch: int) -> str:
    lines = []
    for name, packages, cache in PAIRS[pair]:
        lines += [f"[envs.{name}]", "packages = [" + ", ".join(json.dumps(p) for p in packages) + "]",
                  f"cache_dir = {json.dumps(str(out / cache))}", ""]
    lines += ["[[sweep]]", f'frameworks = ["{FRAMEWORK[pair]}"]', f'models = ["{model}"]', f"batch_sizes = [{batch}]",
              'profile = "quick"', ""]
    return "\n".join(lines)


def record_builds(pair: str, out: Path) -> None:
    builder = envs.Builder()
    for name, packages, cache in PAIRS[pair]:
        spec = envs.EnvSpec(name, packages, cache_dir=str(out / cache))
        t0 = time.monotonic()
        first = builder.build(spec, envinfo.REPO_ROOT)
        first_s = time.monotonic() - t0
        t0 = time.monotonic()
        again = builder.build(spec, envinfo.REPO_ROOT)
        again_s = time.monotonic() - t0
        row = {"utc": envinfo.utc_now(), "pair": pair, "env": name, "pin_hash": first.pin_hash,
               "built_now": first.built_now, "first_call_s": round(first_s, 2), "build_s": first.build_s,
               "cached_call_s": round(again_s, 2), "cached_reused": not again.built_now,
               "size_bytes": envs._size(first.directory), "pins": list(first.pins)}
        with open(out / "builds.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"{name}: {'built' if first.built_now else 'found'} in {first_s:.1f} s, cached call {again_s:.1f} s, "
              f"{row['size_bytes'] / 1e6:.0f} MB", flush=True)


def collect(args: argparse.Namespace) -> int:
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    record_builds(args.pair, out)
    cfg = out / f"{args.pair}-{args.model}.toml"
    cfg.write_text(config_text(args.pair, args.model, out, args.batch))
    run_id = f"{args.pair}-{args.model}-{args.label}"
    cmd = [sys.executable, "-m", "bench", "run", "--config", str(cfg), "--rounds", str(args.rounds),
           "--memory-rounds", "0", "--threads", str(args.threads), "--results-dir", str(out / "results"),
           "--run-id", run_id, "--quiet"]
    if (out / "results" / run_id / "manifest.json").exists():
        cmd = [sys.executable, "-m", "bench", "run", "--resume", run_id, "--results-dir", str(out / "results"), "--quiet"]
    return subprocess.call(cmd, cwd=envinfo.REPO_ROOT)


def _side_lines(recs: list[dict]) -> dict[str, str]:
    ok = [Record(r) for r in recs if r.get("status") == "ok"]
    if not ok:
        return {}
    mem = {r.tensor_peak_bytes for r in ok}
    acc = {r.test_accuracy for r in ok}
    return {"tensor MB": "/".join(f"{m / 1e6:.2f}" for m in sorted(x for x in mem if x is not None)) or "-",
            "accuracy": "/".join(f"{a:.4f}" for a in sorted(x for x in acc if x is not None)) or "-",
            "kernel": "/".join(sorted({str(r.raw.get('kernel')) for r in ok})),
            "processes": str(len(ok))}


def report(args: argparse.Namespace) -> int:
    root = Path(args.dir)
    lines = []
    held: dict[tuple[str, str], list[str]] = {}
    for run_dir in sorted((root / "results").iterdir()):
        if not (run_dir / "manifest.json").exists():
            continue
        pair, model, label = run_dir.name.split("-", 2)
        recs = [r for r in results.read_rounds(run_dir) if r.get("mode", "full") == "full"]
        a, b = (p[0] for p in PAIRS[pair])
        base = [r for r in recs if env_name(r) == a]
        head = [r for r in recs if env_name(r) == b]
        cmp = compare.compare(base, head)
        lines.append(f"### {pair} {model} b{args.batch} ({label}): {a} (base) vs {b} (head)")
        lines.append("")
        lines.append("| metric | base | head | verdict | why |")
        lines.append("|---|---|---|---|---|")
        for f in cmp.findings:
            lines.append(f"| {f.rule} | {compare.format_value(f.rule, f.base)} | {compare.format_value(f.rule, f.head)} "
                         f"| {f.verdict} | {f.why} |")
            held.setdefault((pair, model, f.rule), []).append(str(f.verdict))
        sb, sh = _side_lines(base), _side_lines(head)
        for k in ("processes", "tensor MB", "accuracy", "kernel"):
            lines.append(f"| {k} | {sb.get(k, '-')} | {sh.get(k, '-')} | | |")
        lines += [""] + [f"- {p}" for p in cmp.packages] + [""]
    lines.append("### Which verdicts held in every run")
    lines.append("")
    for (pair, model, rule), verdicts in sorted(held.items()):
        same = len(set(verdicts)) == 1
        lines.append(f"- {pair} {model} {rule}: {', '.join(verdicts)}" + (" (held)" if same and len(verdicts) > 1 else ""))
    builds = [json.loads(x) for x in (root / "builds.jsonl").read_text().splitlines()] if (root / "builds.jsonl").exists() else []
    if builds:
        lines += ["", "### Build cost", "", "| env | first call s | built then | cached call s | apparent size MB |",
                  "|---|---|---|---|---|"]
        lines += [f"| {b['env']} | {b['first_call_s']} | {b['built_now']} | {b['cached_call_s']} | "
                  f"{b['size_bytes'] / 1e6:.0f} |" for b in builds]
    text = "\n".join(lines) + "\n"
    if args.md:
        Path(args.md).write_text(text)
    print(text)
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect")
    c.add_argument("--out", required=True)
    c.add_argument("--pair", choices=sorted(PAIRS), required=True)
    c.add_argument("-m", "--model", required=True)
    c.add_argument("--label", required=True, help="which repetition (r1, r2): one run directory each")
    c.add_argument("--rounds", type=int, default=5)
    c.add_argument("--threads", type=int, default=2)
    c.add_argument("--batch", type=int, default=128)
    c.set_defaults(func=collect)
    r = sub.add_parser("report")
    r.add_argument("dir")
    r.add_argument("--md")
    r.add_argument("--batch", type=int, default=128)
    r.set_defaults(func=report)
    args = p.parse_args()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
