"""Which host a set was measured on (bench.decide.hosts): a machine id alone is not a host, and
compare/check refuse sets from different hosts in one line unless told to compare them anyway."""
from __future__ import annotations

from pathlib import Path

from bench import cli, envinfo
from bench.decide import hosts

ROOT = Path(__file__).resolve().parent.parent
B = ROOT / "results" / "baselines"


def rec(sgemm=180.0, flags=("avx2", "avx512f"), cpu="AMD EPYC", cores=2, mem=24 * 2**30):
    return {"key": "k", "status": "ok", "env": {"cpu_model": cpu, "cpu_flags": list(flags), "cpu_logical_cores": cores,
                                                "memory_total_bytes": mem, "machine_id": "m"},
            "analytic": {"calibration_gflops": sgemm}}


def test_one_host_read_twice_is_one_host_and_each_difference_is_named():
    same = [rec(180.0), rec(200.0)]  # within the band one host shows
    assert hosts.mismatch(same, [rec(170.0)]) is None
    assert "sgemm rate (1.56x apart" in hosts.mismatch([rec(204.0)], [rec(131.0)])
    assert "ISA flags" in hosts.mismatch([rec(flags=("avx2",))], [rec(flags=("avx2", "avx512f"))])
    assert "CPU model" in hosts.mismatch([rec(cpu="Intel Xeon")], [rec()])
    assert "core count" in hosts.mismatch([rec(cores=4)], [rec()])
    # records from before flags were recorded say nothing about them: not a difference
    old = rec()
    old["env"].pop("cpu_flags")
    assert hosts.mismatch([old], [rec()]) is None


def test_the_two_quick_baselines_that_share_a_machine_id_are_told_apart(capsys):
    argv = ["compare", str(B / "cpu-2core-quick"), str(B / "cpu-2core-quick-tensor-memory")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "host differs" in err and "--allow-host-mismatch" in err
    assert cli.main([*argv, "--allow-host-mismatch"]) == 0
    assert "warning (--allow-host-mismatch)" in " ".join(capsys.readouterr().out.split())
    assert cli.main(["compare", str(B / "cpu-2core-quick"), str(B / "cpu-2core-quick")]) == 0


def test_this_machine_records_its_isa_flags():
    env = envinfo.environment(1)
    assert env["cpu_flags"] == list(envinfo.cpu_flags())
    assert set(env["cpu_flags"]) <= set(envinfo.ISA_FLAGS)
