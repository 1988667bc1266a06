"""The README's scheduler snippets (section "Scheduled retraining") are correct as written:
each calls `tfstream retrain` with options it accepts, and each scheduler's own format
is checked as far as this machine can (systemd-analyze; a stand-in Airflow that renders
the DAG's template; the CronJob's batch/v1 fields)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import types

import pytest
import yaml

from tfstream.testing import ROOT

README = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
SECTION = README.split("## Scheduled retraining", 1)[1].split("\n## ", 1)[0]


def _blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", SECTION, re.S)


def _retrain_args(command: str) -> list[str]:
    """The arguments after `tfstream` in a shell command line, checked by tfstream's parser."""
    from tfstream.cli import _parser

    words = shlex.split(command)
    start = next(i for i, w in enumerate(words) if w.endswith("tfstream") and words[i + 1] == "retrain")
    args = words[start + 1:]
    args = args[:next((i for i, w in enumerate(args) if w in (">>", ">", "2>&1", "&&", ";")), len(args))]
    parsed = _parser().parse_args(args)
    assert parsed.command == "retrain" and parsed.config == "configs/flights_retrain.yaml"
    assert os.path.exists(os.path.join(ROOT, parsed.config))
    return args


def test_the_crontab_line():
    (block,) = _blocks("crontab")
    (line,) = [x for x in block.splitlines() if x.strip() and not x.startswith("#")]
    fields = line.split(None, 5)
    assert len(fields) == 6, "five time fields and a command"
    for field, (low, high) in zip(fields[:5], ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))):
        for part in field.split(","):
            assert part == "*" or low <= int(part) <= high, field
    assert "%" not in fields[5], "cron turns % into a newline"
    _retrain_args(fields[5])
    # the shell command parses as a shell command
    subprocess.run(["sh", "-n", "-c", fields[5]], check=True)


def _unit(name: str) -> str:
    return next(b for b in _blocks("ini") if f"/etc/systemd/system/{name}" in b)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_systemd_units_verify(tmp_path):
    service, timer = _unit("tfstream-retrain.service"), _unit("tfstream-retrain.timer")
    exec_start = re.search(r"^ExecStart=(.*)$", service, re.M)[1]
    _retrain_args(exec_start)
    assert re.search(r"^SuccessExitStatus=10 11 75$", service, re.M)
    assert re.search(r"^Type=oneshot$", service, re.M)
    # verify as written, with the paths and the user of this machine
    tfstream = shutil.which("tfstream") or os.path.join(ROOT, ".venv", "bin", "tfstream")
    import getpass

    local = service.replace("/srv/tfstream/.venv/bin/tfstream", tfstream).replace("/srv/tfstream", ROOT) \
        .replace("User=tfstream", f"User={getpass.getuser()}")
    (tmp_path / "tfstream-retrain.service").write_text(local)
    (tmp_path / "tfstream-retrain.timer").write_text(timer)
    out = subprocess.run(["systemd-analyze", "verify", "--man=no", str(tmp_path / "tfstream-retrain.timer"),
                          str(tmp_path / "tfstream-retrain.service")], capture_output=True, text=True)
    problems = [line for line in (out.stdout + out.stderr).splitlines()
                if "tfstream-retrain" in line and "network-online.target" not in line]
    assert out.returncode == 0 and not problems, out.stdout + out.stderr


def test_the_airflow_dag_renders_a_valid_command(monkeypatch):
    """Against a stand-in `airflow` with the signatures of Airflow 2.6+ (DAG as a
    context manager; BashOperator's bash_command, cwd, skip_on_exit_code, retries,
    retry_delay), and the template rendered by Jinja as Airflow does."""
    jinja2 = pytest.importorskip("jinja2")
    import datetime

    operators: list[dict] = []

    class DAG:
        def __init__(self, dag_id, *, schedule, start_date, catchup=True, max_active_runs=16):
            assert schedule == "@monthly" and start_date.tzinfo is not None
            self.dag_id = dag_id

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def bash_operator(*, task_id, bash_command, cwd=None, skip_on_exit_code=99, retries=0, retry_delay=None,
                      env=None, append_env=False, output_encoding="utf-8"):
        operators.append(dict(task_id=task_id, bash_command=bash_command, cwd=cwd, skip=skip_on_exit_code,
                              retries=retries, retry_delay=retry_delay))

    airflow = types.ModuleType("airflow")
    airflow.DAG = DAG
    bash = types.ModuleType("airflow.operators.bash")
    bash.BashOperator = bash_operator
    monkeypatch.setitem(sys.modules, "airflow", airflow)
    monkeypatch.setitem(sys.modules, "airflow.operators", types.ModuleType("airflow.operators"))
    monkeypatch.setitem(sys.modules, "airflow.operators.bash", bash)
    (code,) = [b for b in _blocks("python") if "BashOperator" in b]
    exec(compile(code, "README.md (Airflow DAG)", "exec"), {})
    (op,) = operators
    assert set(op["skip"]) == {10, 11} and op["cwd"] == "/srv/tfstream"
    assert isinstance(op["retry_delay"], datetime.timedelta)
    rendered = jinja2.Template(op["bash_command"]).render(
        data_interval_start=datetime.datetime(2013, 3, 1, tzinfo=datetime.timezone.utc))
    args = _retrain_args(rendered)
    assert args[args.index("--until") + 1] == "2013-03"


def test_the_kubernetes_cronjob():
    (text,) = [b for b in _blocks("yaml") if "kind: CronJob" in b]
    job = yaml.safe_load(text)
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "CronJob"
    spec = job["spec"]
    assert len(spec["schedule"].split()) == 5 and spec["concurrencyPolicy"] == "Forbid"
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] in ("Never", "OnFailure")
    (container,) = pod["containers"]
    assert container["command"] == ["/bin/sh", "-c"]
    script = container["args"][0]
    subprocess.run(["sh", "-n", "-c", script], check=True)
    _retrain_args(script.splitlines()[0])
    # the exit status mapping, run for real with a stand-in tfstream
    for status, expected in ((0, 0), (10, 0), (11, 0), (75, 75), (2, 2), (1, 1)):
        fake = f"tfstream() {{ return {status}; }}\n" + script
        assert subprocess.run(["sh", "-c", fake]).returncode == expected, status
    claim = pod["volumes"][0]["persistentVolumeClaim"]["claimName"]
    assert claim and container["volumeMounts"][0]["name"] == pod["volumes"][0]["name"]
    if shutil.which("kubectl"):
        out = subprocess.run(["kubectl", "create", "--dry-run=client", "--validate=false", "-o", "name", "-f", "-"],
                             input=text, capture_output=True, text=True)
        if out.returncode == 0:  # (needs no cluster; older kubectl may want one: then only the checks above)
            assert out.stdout.strip() == "cronjob.batch/tfstream-retrain-flights"
