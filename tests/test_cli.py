"""The command line: ``python -m minise.gradcheck``, ``python -m minise.cli``."""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minise.cli
import minise.gradcheck
import minise.gradcheck_cases
from minise import nn

ROOT = Path(__file__).resolve().parents[1]


def run(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               MKL_NUM_THREADS="1")
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


def _summary_line(text):
    m = re.search(r"^(\d+) passed, (\d+) failed \(threshold ([^)]+)\)$", text, re.M)
    assert m, text
    return int(m.group(1)), int(m.group(2)), m.group(3)


def test_gradcheck_module_only_seblock():
    proc = run("-m", "minise.gradcheck", "--only", "SEBlock")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("SEBlock")]
    # one row per tensor of every SEBlock configuration in the battery: the input and each parameter
    from minise.gradcheck_cases import standard_cases
    expected = sum(1 + len(list(module.parameters()))
                   for layer, _, module, _, _ in standard_cases() if layer == "SEBlock")
    assert len(rows) == expected >= 12
    assert all(line.rstrip().endswith("pass") for line in rows)
    assert {line.split()[-3] for line in rows} == {"input", "sequence.2.weight", "sequence.2.bias",
                                                   "sequence.4.weight", "sequence.4.bias"}
    assert not any(line.startswith(("Conv2d", "BasicBlock", "SEBottleneck")) for line in proc.stdout.splitlines())
    assert _summary_line(proc.stdout) == (expected, 0, "1e-07")


def test_gradcheck_module_exits_non_zero_on_failure():
    proc = run("-m", "minise.gradcheck", "--only", "SEBlock", "--threshold", "1e-30")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    passed, failed, _ = _summary_line(proc.stdout)
    rows = [line for line in proc.stdout.splitlines() if line.startswith("SEBlock")]
    assert failed > 0 and passed + failed == len(rows) >= 12
    assert "FAIL" in proc.stdout


def test_cli_summary():
    proc = run("-m", "minise.cli", "summary", "--model", "SEBlock(64, 16)")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Total params: 576" in proc.stdout
    assert "[1, 64, 32, 32]" in proc.stdout
    assert "SEBlock" in proc.stdout and "Linear" in proc.stdout


def test_cli_summary_options(capsys):
    assert minise.cli.main(["summary", "--model", "Conv2d(3, 8, 3, padding=1)",
                            "--input-size", "2,3,5,5", "--mult-adds"]) == 0
    out = capsys.readouterr().out
    assert "Mult-Adds" in out and "[2, 8, 5, 5]" in out
    assert f"{2 * 8 * 5 * 5 * 3 * 3 * 3:,}" in out
    assert "Total params: 224" in out


def test_cli_summary_bad_model(capsys):
    with pytest.raises(SystemExit) as info:
        minise.cli.main(["summary", "--model", "NoSuchLayer(3)"])
    assert info.value.code == 2
    assert "--model 'NoSuchLayer(3)'" in capsys.readouterr().err


def test_cli_summary_cannot_reach_builtins(capsys):
    with pytest.raises(SystemExit) as info:
        minise.cli.main(["summary", "--model", "__import__('os').getcwd()"])
    assert info.value.code == 2


def test_cli_summary_bad_input_size(capsys):
    with pytest.raises(SystemExit) as info:
        minise.cli.main(["summary", "--model", "SEBlock(64, 16)", "--input-size", "1,x"])
    assert info.value.code == 2
    assert "expected integers separated by commas, such as 1,64,32,32; got '1,x'" in capsys.readouterr().err
    assert minise.cli.main(["summary", "--model", "SEBlock(64, 16)", "--input-size", "1,3,32,32"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("minise summary: error: --input-size 1,3,32,32: ") and "expected 64 channels" in err


def test_cli_unknown_command(capsys):
    assert minise.cli.main(["nonsense"]) == 2
    captured = capsys.readouterr()
    assert "usage: minise COMMAND" in captured.out and "gradcheck" in captured.out and "summary" in captured.out
    assert "minise: unknown command 'nonsense'" in captured.err


@pytest.mark.parametrize("argv", [[], ["-h"], ["--help"]])
def test_cli_help(argv, capsys):
    assert minise.cli.main(argv) == 0
    assert "usage: minise COMMAND" in capsys.readouterr().out


def test_cli_ablate_dry_run(tmp_path, capsys):
    argv = ["ablate", "--grid", "squeeze", "--seeds", "0", "--dry-run", "--out", str(tmp_path / "out")]
    assert minise.cli.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"2 runs (shard 0/1) in {tmp_path / 'out'}:"
    assert [line.split()[1] for line in lines[1:]] == [f"se_resnet20-r16-h4-{s}-sigmoid-standard-s123-seed0"
                                                       for s in ("avg", "max")]
    assert all(line.endswith("new") for line in lines[1:]) and not (tmp_path / "out").exists()
    assert minise.cli.main([]) == 0 and "  ablate " in capsys.readouterr().out


def test_ablate_module_dry_run(tmp_path):
    proc = run("-m", "minise.cli", "ablate", "--grid", "paper", "--dry-run", "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("36 runs (shard 0/1)") and len(proc.stdout.splitlines()) == 37


def test_cli_gradcheck_command(capsys):
    with pytest.raises(SystemExit) as info:
        minise.cli.main(["gradcheck", "--only", "Tanh"])
    assert info.value.code == 0
    assert _summary_line(capsys.readouterr().out)[:2] == (1, 0)


# ---- run_cases with a deliberately broken module ------------------------------------------------
class BrokenSigmoid(nn.Sigmoid):
    """Wrong on purpose: the derivative of a sigmoid is out * (1 - out), not out."""

    def derivative_times(self, xp, out, dout):
        return dout * out


def _cases(*modules):
    rng = np.random.default_rng(0)
    return [(type(m).__name__, "x=(2, 3)", m, rng.standard_normal((2, 3)), ()) for m in modules]


def test_run_cases_fails_on_a_broken_module(capsys):
    assert minise.gradcheck.run_cases(_cases(nn.Tanh(), BrokenSigmoid()), []) == 1
    out = capsys.readouterr().out
    broken = [line for line in out.splitlines() if line.startswith("BrokenSigmoid")]
    assert len(broken) == 1 and broken[0].rstrip().endswith("FAIL")
    assert [line for line in out.splitlines() if line.startswith("Tanh")][0].rstrip().endswith("pass")
    assert _summary_line(out)[:2] == (1, 1)


def test_run_cases_passes_when_all_pass(capsys):
    assert minise.gradcheck.run_cases(_cases(nn.Tanh(), nn.Sigmoid()), []) == 0
    assert _summary_line(capsys.readouterr().out)[:2] == (2, 0)


def test_run_cases_only_filter_and_nothing_checked(capsys):
    cases = _cases(nn.Tanh(), BrokenSigmoid())
    assert minise.gradcheck.run_cases(cases, ["--only", "tanh"]) == 0      # case-insensitive
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:                                 # nothing to check: said, not run
        minise.gradcheck.run_cases(cases, ["--only", "Conv"])
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert "--only 'Conv' matches no layer" in captured.err and "'Tanh', 'BrokenSigmoid'" in captured.err
    assert captured.out == ""


def test_gradcheck_only_a_layer_that_does_not_exist():
    proc = run("-m", "minise.cli", "gradcheck", "--only", "NoSuchLayer")
    assert proc.returncode == 2 and proc.stdout == ""
    assert "minise gradcheck: error: --only 'NoSuchLayer' matches no layer" in proc.stderr
    assert "'SEBlock'" in proc.stderr and "Traceback" not in proc.stderr


# ---- help ----------------------------------------------------------------------------------------

def _option_blocks(help_text):
    """{invocation: its help text} for each option in an argparse help text ('--lr LR': '...')."""
    blocks, current = {}, None
    for line in help_text.split("\nexamples:")[0].splitlines():
        m = re.match(r"^  (-\S.*?)(?:  +(.*))?$", line)
        if m:
            current = m.group(1)
            blocks[current] = m.group(2) or ""
        elif current and line.startswith("        "):
            blocks[current] += " " + line.strip()
        else:
            current = None
    return blocks


@pytest.mark.parametrize("command", ["train", "evaluate", "ablate", "gradcheck", "summary"])
def test_help_shows_each_default_once(command):
    proc = run("-m", "minise.cli", command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "``" not in proc.stdout
    blocks = _option_blocks(proc.stdout)
    assert len(blocks) >= 3, proc.stdout
    for invocation, text in blocks.items():
        takes_value = " " in invocation.replace(", ", ",") or ", --no-" in invocation
        assert text.count("default") <= 1, f"{command} {invocation}: {text}"
        if takes_value and (command, invocation) != ("summary", "--model MODEL"):     # --model is required
            assert text.count("default") == 1, f"{command} {invocation}: {text}"
    if command != "summary":
        examples = proc.stdout.split("\nexamples:\n")
        assert len(examples) == 2 and f"minise {command}" in examples[1], proc.stdout


def test_train_and_ablate_declare_their_shared_options_once():
    from minise.training.ablate import build_parser as ablate_parser
    from minise.training.train_command import build_parser as train_parser

    train_options = {a.dest: a for a in train_parser()._actions}
    shared = [a for a in ablate_parser()._actions if a.dest in train_options and a.dest not in ("help", "out", "epochs")]
    assert {"lr", "schedule", "device", "threads", "momentum", "batch_size", "data", "data_dir"} <= {a.dest for a in shared}
    for a in shared:
        b = train_options[a.dest]
        assert (a.help, a.choices, a.type, a.default) == (b.help, b.choices, b.type, b.default), a.dest


def test_version():
    from minise import __version__

    proc = run("-m", "minise.cli", "--version")
    assert proc.returncode == 0 and proc.stdout == f"minise {__version__}\n"


@pytest.mark.parametrize("threshold", ["nan", "-1e-6", "0", "tiny"])
def test_run_cases_refuses_a_threshold_that_fails_everything(threshold, capsys):
    with pytest.raises(SystemExit) as info:
        minise.gradcheck.run_cases(_cases(nn.Tanh()), [f"--threshold={threshold}"])
    assert info.value.code == 2
    assert f"expected a finite number > 0, such as 1e-6; got '{threshold}'" in capsys.readouterr().err


def test_main_exit_code_follows_the_cases(monkeypatch, capsys):
    monkeypatch.setattr(minise.gradcheck_cases, "standard_cases", lambda: iter(_cases(BrokenSigmoid())))
    with pytest.raises(SystemExit) as info:
        minise.gradcheck.main([])
    assert info.value.code == 1
    assert "FAIL" in capsys.readouterr().out


def test_importing_the_layers_leaves_training_pillow_and_tqdm_out():
    """``import minise.nn`` (and ``import minise``) load neither the training package nor the data
    loaders' Pillow and tqdm; ``minise.load_model`` still comes on first use."""
    proc = run("-c", "import sys, minise.nn, minise; "
                     "print(sorted(m for m in ('minise.training', 'minise.data', 'PIL', 'tqdm') if m in sys.modules)); "
                     "print(minise.load_model.__module__)")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["[]", "minise.training.load"]


def test_an_empty_data_path_is_refused(tmp_path, capsys):
    """--data '' names no source: refused, not a scan of the working folder."""
    assert minise.cli.main(["train", "--data", "", "--out", str(tmp_path / "run"), "--no-progress"]) == 1
    assert "--data must name a data source" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
