"""The torchinfo-like summary table, and the ``minise summary`` command."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minise import nn
from minise.models import SEBottleneck
from minise.summary import summary

ROOT = Path(__file__).resolve().parents[1]


def _row(stats, name):
    return next(r for r in stats.rows if r.name == name)


def test_se_block_totals_and_rows():
    stats = summary(nn.SEBlock(64, 16), (1, 64, 32, 32), verbose=False)
    assert stats.total_params == 576 and stats.trainable_params == 576 and stats.non_trainable_params == 0
    fc1, fc2 = _row(stats, "sequence.2"), _row(stats, "sequence.4")
    assert (fc1.num_params, fc2.num_params) == (256, 320)
    assert [r.num_params for r in stats.rows if r.num_params] == [256, 320]
    assert fc1.input_size == (1, 64) and fc1.output_size == (1, 4)
    assert fc2.input_size == (1, 4) and fc2.output_size == (1, 64)
    assert _row(stats, "").input_size == (1, 64, 32, 32) == _row(stats, "").output_size
    assert _row(stats, "sequence.0").output_size == (1, 64, 1, 1)
    assert _row(stats, "sequence.6").output_size == (1, 64, 1, 1)
    # the SE block runs its sequence as two slices: the container takes its children's shapes
    assert _row(stats, "sequence").input_size == (1, 64, 32, 32)
    assert _row(stats, "sequence").output_size == (1, 64, 1, 1)
    assert [r.index for r in stats.rows] == ["0-1", "1-1"] + [f"2-{i}" for i in range(1, 8)]
    assert stats.param_bytes == 576 * 4 and stats.input_bytes == 64 * 32 * 32 * 4


def test_printed_table(capsys):
    stats = summary(nn.SEBlock(64, 16), (1, 64, 32, 32))
    printed = capsys.readouterr().out
    assert printed.strip() == str(stats).strip()
    assert "Total params: 576" in printed
    assert "Trainable params: 576" in printed and "Non-trainable params: 0" in printed
    lines = printed.splitlines()
    linear_rows = [line for line in lines if "Linear" in line]
    assert len(linear_rows) == 2
    assert "[1, 64]" in linear_rows[0] and "[1, 4]" in linear_rows[0] and "256" in linear_rows[0]
    assert "[1, 4]" in linear_rows[1] and "[1, 64]" in linear_rows[1] and "320" in linear_rows[1]
    assert any(line.startswith("SEBlock") and "[1, 64, 32, 32]" in line for line in lines)
    assert "Input Shape" in printed and "Output Shape" in printed and "Param #" in printed
    assert "Mult-Adds" not in printed


def test_verbose_false_prints_nothing(capsys):
    summary(nn.SEBlock(8, 2), (1, 8, 4, 4), verbose=False)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("C, O, k, s, p, shape", [
    (3, 8, 3, 2, 1, (2, 3, 9, 9)),
    (4, 5, (1, 3), 1, 0, (1, 4, 6, 7)),
])
def test_conv_mult_adds(C, O, k, s, p, shape):
    conv = nn.Conv2d(C, O, k, stride=s, padding=p)
    stats = summary(conv, shape, col_names=("output_size", "mult_adds"), verbose=False)
    N, _, H, W = shape
    kh, kw = conv.kernel_size
    Ho, Wo = (H + 2 * p - kh) // s + 1, (W + 2 * p - kw) // s + 1
    row = stats.rows[0]
    assert row.output_size == (N, O, Ho, Wo)
    assert row.mult_adds == N * O * Ho * Wo * C * kh * kw
    assert stats.total_mult_adds == row.mult_adds
    assert "Mult-Adds" in str(stats) and f"{row.mult_adds:,}" in str(stats)


def test_linear_mult_adds():
    stats = summary(nn.Sequential(nn.Linear(6, 5), nn.ReLU()), (3, 6), col_names=("mult_adds",), verbose=False)
    assert _row(stats, "0").mult_adds == 3 * 6 * 5
    assert _row(stats, "1").mult_adds == 0
    assert stats.total_mult_adds == 90


def test_summary_leaves_the_model_as_it_was():
    nn.manual_seed(0)
    block = SEBottleneck(8, 2, 2)
    block(np.random.default_rng(0).standard_normal((2, 8, 4, 4)).astype(np.float32))   # nonzero stats
    before = {k: v.copy() for k, v in block.state_dict().items()}
    stats = summary(block, (2, 8, 4, 4), verbose=False)
    assert stats.total_params == sum(p.size for p in block.parameters())
    for k, v in block.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    assert int(block.block[1].num_batches_tracked) == 1
    assert all(m.training for m in block.modules())
    assert not any("forward" in m.__dict__ for m in block.modules())

    block.eval()
    summary(block, (2, 8, 4, 4), verbose=False)
    assert not any(m.training for m in block.modules())


def test_summary_restores_forward_when_the_model_fails():
    conv = nn.Conv2d(3, 4, 3)
    with pytest.raises(ValueError, match="expected 3 channels"):
        summary(conv, (1, 5, 8, 8), verbose=False)
    assert "forward" not in conv.__dict__
    assert conv(np.zeros((1, 3, 4, 4), dtype=np.float32)).shape == (1, 4, 2, 2)


def test_non_trainable_params_counted():
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    model[0].weight.requires_grad = False
    stats = summary(model, (1, 4), verbose=False)
    assert stats.total_params == 12 + 3 + 6 + 2
    assert stats.trainable_params == 3 + 6 + 2 and stats.non_trainable_params == 12
    assert "Non-trainable params: 12" in str(stats)


def test_float64_model_with_dtype():
    stats = summary(nn.SEBlock(8, 2).double(), (1, 8, 4, 4), dtype="float64", verbose=False)
    assert stats.input_bytes == 8 * 4 * 4 * 8 and stats.param_bytes == (32 + 32 + 8) * 8


def test_unknown_column():
    with pytest.raises(ValueError, match="'flops'"):
        summary(nn.ReLU(), (1, 3), col_names=("input_size", "flops"), verbose=False)


# --- the command: --model is parsed, never run; each escape below once ran code ---

def run_summary(model, *options, tmp_path):
    """`python -m minise.cli summary --model MODEL`, run in tmp_path, within 60 s."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "minise.cli", "summary", "--model", model, *options],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)


ESCAPES = {
    "globals": "SEBlock.__init__.__globals__['__builtins__']['__import__']('os').system('touch pwned') "
               "or SEBlock(64, 16)",
    "subclasses": "[c for c in ().__class__.__bases__[0].__subclasses__() if c.__name__ == '_wrap_close'][0]"
                  ".__init__.__globals__['system']('touch pwned') or SEBlock(64, 16)",
    "nested call": "SEBlock(__import__('os').system('touch pwned'), 16)",
}


@pytest.mark.parametrize("escape", ESCAPES.values(), ids=ESCAPES.keys())
def test_escapes_run_nothing(escape, tmp_path):
    proc = run_summary(escape, tmp_path=tmp_path)
    assert not (tmp_path / "pwned").exists()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "--model" in proc.stderr and proc.stdout == ""


@pytest.mark.parametrize("text, fragment", [
    ("9**9**9", "expected a layer or model name"),   # an operator, refused before anything is computed
    ("SEBlock(9**9**9, 16)", "not a literal"),
    ("1", "expected a layer or model name"),
    ("None", "expected a layer or model name"),
    ("SEBlock(64, 16", "not valid syntax"),
])
def test_non_models_get_one_error_line(text, fragment, tmp_path):
    proc = run_summary(text, tmp_path=tmp_path)          # 9**9**9 would take hours to evaluate: timeout=60
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith("minise summary: error: --model") and fragment in error


def test_model_name_alone_takes_a_cifar_input(tmp_path):
    proc = run_summary("se_resnet20", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "CifarResNet" in proc.stdout and "[1, 3, 32, 32]" in proc.stdout and "[1, 10]" in proc.stdout
