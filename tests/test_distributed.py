import pytest
"""Two processes under jax.distributed (CPU, 127.0.0.1) share one manifest: every item is done
exactly once, by the process its index assigns, and the outputs equal a one-process run."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
from typer.testing import CliRunner

from jaxstyle import reading
from jaxstyle.cli import app
from jaxstyle.cachedirs import CACHE_ENV
from test_batch_cli import csv_manifest, write_inputs

PROCESSES = 2
ITEMS = 4
TIMEOUT_S = 300


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # multi-process / multi-device or many compiles: CI runs it via -m slow
def test_two_processes_split_a_manifest_and_match_one_process(tmp_path, monkeypatch):
    data = tmp_path / "data"
    write_inputs(data)
    manifest = csv_manifest(data / "m.csv", [f"c{i % 2}.png,s{(i // 2) % 2}.png,o{i}.png" for i in range(ITEMS)],
                            header="content,style,output")
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update({"JAX_PLATFORMS": "cpu", CACHE_ENV: str(tmp_path / "cache")})
    command = [sys.executable, "-c", "from jaxstyle.cli import app; app(prog_name='jaxstyle')", "batch",
               str(manifest), "-o", str(out), "--config", str(data / "tiny.toml"), "--quiet",
               "--coordinator", f"127.0.0.1:{free_port()}", "--num-processes", str(PROCESSES)]
    procs = [subprocess.Popen([*command, "--process-id", str(i)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(PROCESSES)]
    try:
        results = [p.communicate(timeout=TIMEOUT_S) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for i, (p, (_, err)) in enumerate(zip(procs, results)):
        assert p.returncode == 0, err
        assert f"2 done, 0 skipped, 0 failed (process {i} of {PROCESSES})" in err

    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == {"done": ITEMS, "skipped": 0, "failed": 0}
    assert sorted(e["output"] for e in summary["items"]) == [f"o{i}.png" for i in range(ITEMS)]
    assert all(e["process"] == e["index"] % PROCESSES for e in summary["items"])

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    reference = tmp_path / "reference"
    result = CliRunner().invoke(app, ["batch", str(manifest), "-o", str(reference), "--config",
                                      str(data / "tiny.toml"), "--quiet"])
    assert result.exit_code == 0, (result.output, result.exception)
    for i in range(ITEMS):
        shared, alone = (np.round(reading.load_image(d / f"o{i}.png") * 255) for d in (out, reference))
        assert np.abs(shared - alone).max() <= 1  # 8-bit outputs of float32-equal images
