"""``labelleak audit`` and :func:`labelleak.audit`: models trained and unlearned by someone else's
code, read as data only, attacked and calibrated on the attacker's never-unlearned null models."""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import DATASET
from safetensors.torch import save_file
from torch import nn

import labelleak
from labelleak.auditing import AuditResult, Verdict
from labelleak.cli import main
from labelleak.data import load_dataset, make_splits
from labelleak.errors import LabelleakError
from labelleak.models import MLP

FORGOTTEN = 7
DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"


def invoke(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def train_without_class(model: nn.Module, forgotten: int = FORGOTTEN) -> nn.Module:
    """The user's own training code: plain Adam on digits, class ``forgotten`` left out (the
    exact unlearning a retrain gives)."""
    x, y = make_splits(load_dataset(DATASET)).target_data()
    keep = y != forgotten
    x, y = x[keep], y[keep]
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(40):
        order = torch.randperm(len(y), generator=generator)
        for batch in order.split(64):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def foreign_model() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    return train_without_class(net)


@pytest.fixture(scope="module")
def saved_mlp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """labelleak's MLP architecture trained and saved by the test's own code, as a torch state
    dict without the normalisation buffers (a user's script need not save them)."""
    data = load_dataset(DATASET)
    torch.manual_seed(0)
    model = train_without_class(MLP(data.input_shape, 10, data.mean, data.std))
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("input_")}
    path = tmp_path_factory.mktemp("user") / "unlearned.pt"
    torch.save(state, path)
    return path


def test_audit_of_a_foreign_module_names_the_forgotten_class(foreign_model, tmp_path) -> None:
    before = {k: v.clone() for k, v in foreign_model.state_dict().items()}
    result = labelleak.audit(foreign_model, DATASET, null_models=3, cache_dir=tmp_path)
    ranked = [v.named for v in result.verdicts if v.rule == "top" and v.attack != "chance"]
    assert max(set(ranked), key=ranked.count) == (FORGOTTEN,)
    evidence = result.evidence()
    assert any(v.named == (FORGOTTEN,) for v in evidence.values())
    assert all(v.false_alarm_rate() <= result.max_false_alarm for v in evidence.values())
    assert f"class {FORGOTTEN}" in result.summary()
    # The ranking attacks agree on class 7 more than they agree on anything on a null model.
    assert len(result.null_agreement) == 3
    assert result.verdict()[0] == (FORGOTTEN,)
    assert result.reserve_accuracy[FORGOTTEN] < 0.1
    # The final nn.Linear is found, so the parameter attacks ran; the module was not touched.
    assert {"param-diff", "head-bias"} <= {v.attack for v in result.verdicts}
    assert "probe-drop" in result.skipped
    for name, tensor in foreign_model.state_dict().items():
        assert torch.equal(tensor, before[name])
    frame = result.to_frame()
    assert len(frame) == len(result.verdicts)
    assert frame["false alarms [95% CI]"].str.contains("/3").any()


def test_black_box_audit_runs_query_attacks_only(foreign_model, tmp_path) -> None:
    result = labelleak.audit(
        foreign_model, DATASET, black_box=True, null_models=2, cache_dir=tmp_path
    )
    ran = {v.attack for v in result.verdicts}
    assert "invert-black" in ran and "unrelated-histogram" in ran
    assert not ran & {"param-dot", "param-diff", "invert-white", "head-bias", "head-norm"}
    assert "white-box" in result.skipped["invert-white"]
    black = next(v for v in result.verdicts if v.attack == "invert-black" and v.rule == "top")
    assert black.named == (FORGOTTEN,) and black.queries > 0


def test_without_a_final_linear_the_parameter_attacks_are_skipped(foreign_model, tmp_path) -> None:
    class Tempered(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x) / 2.0

    result = labelleak.audit(Tempered(foreign_model), DATASET, null_models=2, cache_dir=tmp_path)
    for name in ("param-dot", "param-diff", "head-bias", "head-norm"):
        assert "final nn.Linear" in result.skipped[name]
    assert "invert-white" in {v.attack for v in result.verdicts}
    with pytest.raises(LabelleakError, match=r"param-diff cannot run.*final nn\.Linear"):
        labelleak.audit(Tempered(foreign_model), DATASET, attacks=["param-diff"], null_models=1)


def test_a_model_with_the_wrong_output_is_one_line_error(tmp_path) -> None:
    with pytest.raises(LabelleakError, match=r"expected logits of shape \(8, 10\)"):
        labelleak.audit(nn.Sequential(nn.Flatten(), nn.Linear(64, 3)), DATASET, null_models=1)
    with pytest.raises(LabelleakError, match="fails on this dataset's images"):
        labelleak.audit(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), DATASET, null_models=1)


def test_cli_audit_of_a_users_state_dict(saved_mlp, tmp_path, capsys) -> None:
    out = tmp_path / "audit"
    code, stdout, stderr = invoke(
        [
            "audit", str(saved_mlp), "--arch", "mlp", "--dataset", DATASET, "--null-models", "3",
            "--attacks", "invert-white,head-norm", "--attacks", "unrelated-histogram",
            "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "-q",
        ],
        capsys,
    )  # fmt: skip
    assert code == 0, stderr
    assert "Verdict:" in stdout
    content = json.loads((out / "audit.json").read_text())
    assert {v["attack"] for v in content["verdicts"]} == {
        "invert-white", "head-norm", "unrelated-histogram",
    }  # fmt: skip
    white = next(
        v for v in content["verdicts"] if v["attack"] == "invert-white" and v["rule"] == "top"
    )
    assert white["named"] == [FORGOTTEN]
    assert content["summary"] in (out / "audit.md").read_text()
    assert not list(out.glob("*.tmp*"))
    # Safetensors are read too, and the null models come from the cache the second time.
    tensors = torch.load(saved_mlp, weights_only=True)
    save_file(tensors, str(tmp_path / "unlearned.safetensors"))
    code, again, stderr = invoke(
        [
            "audit", str(tmp_path / "unlearned.safetensors"), "--arch", "mlp",
            "--dataset", DATASET, "--null-models", "3", "--attacks", "invert-white,head-norm",
            "--attacks", "unrelated-histogram", "--cache-dir", str(tmp_path / "cache"), "-q",
        ],
        capsys,
    )  # fmt: skip
    assert code == 0, stderr
    # Same verdicts (the table's seconds differ between runs; the summary has none).
    assert again.split("\n\n")[1].strip() == stdout.split("\n\n")[1].strip() == content["summary"]


class Payload:
    """A pickle that runs a command when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


# torch warns that the refused file's pickle protocol is not its default: that is the point.
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("suffix", [".pt", ".pth"])
def test_a_pickle_with_a_payload_is_refused_unexecuted(tmp_path, capsys, suffix) -> None:
    marker = tmp_path / "payload-ran"
    path = tmp_path / f"evil{suffix}"
    with path.open("wb") as handle:
        pickle.dump({"classifier.weight": Payload(marker)}, handle)
    code, _, stderr = invoke(
        ["audit", str(path), "--arch", "mlp", "--dataset", DATASET, "--out", str(tmp_path / "o")],
        capsys,
    )
    assert code == 2
    assert "never unpickles arbitrary objects" in stderr
    assert stderr.strip().count("\n") == 0
    assert not marker.exists()
    assert not (tmp_path / "o").exists()


def test_other_formats_are_not_opened(tmp_path, capsys) -> None:
    marker = tmp_path / "payload-ran"
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(Payload(marker)))
    code, _, stderr = invoke(["audit", str(path), "--arch", "mlp", "--dataset", DATASET], capsys)
    assert code == 2 and "unsupported model file 'model.pkl'" in stderr
    assert not marker.exists()
    code, _, stderr = invoke(
        ["audit", str(tmp_path / "absent.pt"), "--arch", "mlp", "--dataset", DATASET], capsys
    )
    assert code == 2 and "does not exist" in stderr


def test_shape_mismatch_names_the_tensor(tmp_path, capsys) -> None:
    data = load_dataset(DATASET)
    narrow = MLP(data.input_shape, 10, data.mean, data.std, hidden=(32, 64))
    path = tmp_path / "narrow.safetensors"
    save_file({k: v.contiguous() for k, v in narrow.state_dict().items()}, str(path))
    code, _, stderr = invoke(["audit", str(path), "--arch", "mlp", "--dataset", DATASET], capsys)
    assert code == 2
    assert "body.1.weight is (32, 64) in the file, (128, 64) for mlp on digits" in stderr
    assert stderr.strip().count("\n") == 0
    state = {k: v for k, v in narrow.state_dict().items() if not k.startswith("body.3")}
    torch.save(state, tmp_path / "partial.pt")
    code, _, stderr = invoke(
        ["audit", str(tmp_path / "partial.pt"), "--arch", "lenet", "--dataset", DATASET], capsys
    )
    assert code == 2 and "do not fit lenet on digits" in stderr


@pytest.mark.skipif(not DATA_DIR.is_dir(), reason="needs ../shared/data (MNIST)")
def test_wrong_dataset_is_one_line_error(saved_mlp, capsys) -> None:
    code, _, stderr = invoke(
        [
            "audit", str(saved_mlp), "--arch", "mlp", "--dataset", "mnist",
            "--data-dir", str(DATA_DIR), "--null-models", "1",
        ],
        capsys,
    )  # fmt: skip
    assert code == 2
    assert "do not fit mlp on mnist (1x28x28 images, 10 classes)" in stderr
    assert stderr.strip().count("\n") == 0


def test_bad_audit_options_are_one_line_errors(saved_mlp, capsys) -> None:
    base = ["audit", str(saved_mlp), "--arch", "mlp", "--dataset", DATASET]
    for extra, message in [
        (["--attacks", "no-such-attack"], "unknown attack 'no-such-attack'"),
        (["--attacks", "probe-drop"], "probe-drop cannot run in this audit"),
        (["--attacker-classes", "3,x"], "attacker classes must be"),
        (["--attacker-classes", "0,12"], "attacker classes must be ids 0..9"),
    ]:
        code, _, stderr = invoke(base + extra, capsys)
        assert code == 2, extra
        assert message in stderr, (extra, stderr)
    code, _, stderr = invoke(
        ["audit", str(saved_mlp), "--arch", "vgg", "--dataset", DATASET], capsys
    )
    assert code == 2 and "unknown architecture 'vgg'" in stderr


def test_original_and_shadow_rules_add_their_attacks(tmp_path) -> None:
    data = load_dataset(DATASET)
    torch.manual_seed(1)
    full = MLP(data.input_shape, 10, data.mean, data.std)
    full = train_without_class(full, forgotten=-1)  # every class: the model before unlearning
    torch.manual_seed(0)
    unlearned = train_without_class(MLP(data.input_shape, 10, data.mean, data.std))
    result = labelleak.audit(
        unlearned,
        DATASET,
        arch="mlp",
        original=full,
        attacks=["probe-drop", "param-diff", "invert-white"],
        shadow_rules=True,
        null_models=2,
        cache_dir=tmp_path,
    )
    rules = {(v.attack, v.rule): v for v in result.verdicts}
    assert rules["probe-drop", "top"].named == (FORGOTTEN,)
    assert rules["probe-drop", "drop"].false_alarms == 0
    # The shadow-fit rules ran: youden and tree fit on the attacker's unlearned shadows.
    assert {("param-diff", "youden"), ("param-diff", "tree")} <= rules.keys()
    assert {("invert-white", "threshold-fit"), ("invert-white", "entropy-fit")} <= rules.keys()
    with pytest.raises(LabelleakError, match="shadow-fit rules need arch"):
        labelleak.audit(unlearned, DATASET, shadow_rules=True, null_models=1, cache_dir=tmp_path)


def test_a_second_audit_reads_the_null_models_outcomes(saved_mlp, tmp_path, monkeypatch) -> None:
    from labelleak.attacks.baselines import HeadNorm

    calls = []
    original_run = HeadNorm.run

    def counted(self, knowledge, seed=0):  # type: ignore[no-untyped-def]
        calls.append(seed)
        return original_run(self, knowledge, seed)

    monkeypatch.setattr(HeadNorm, "run", counted)
    first = labelleak.audit(
        saved_mlp, DATASET, arch="mlp", attacks=["head-norm"], null_models=3, cache_dir=tmp_path
    )
    assert len(calls) == 1 + 3
    second = labelleak.audit(
        saved_mlp, DATASET, arch="mlp", attacks=["head-norm"], null_models=3, cache_dir=tmp_path
    )
    assert len(calls) == 1 + 3 + 1  # the audited model only
    assert second.verdicts == [replace(v, seconds=w.seconds) for v, w in
                               zip(first.verdicts, second.verdicts, strict=True)]  # fmt: skip
    assert second.null_agreement == first.null_agreement


def _result(agreement: list[int], set_alarms: int, gap_alarms: int = 0) -> AuditResult:
    """A hand-made audit of 10 null models: three attacks rank class 7 first, one ranks 2;
    one set rule names 7 with ``gap_alarms`` false alarms."""
    verdicts = [
        Verdict("a", "top", (7,), None, 10, 0, 0, 0.0),
        Verdict("b", "top", (7,), None, 10, 0, 0, 0.0),
        Verdict("c", "top", (7,), None, 10, 0, 0, 0.0),
        Verdict("d", "top", (2,), None, 10, 0, 0, 0.0),
        Verdict("a", "gap", (7,), gap_alarms, 10, 0, 0, 0.0),
    ]
    return AuditResult(
        "digits", "mlp", False, 1, tuple(range(10)), 10, verdicts, {}, [0.9] * 10, 1.0,
        null_agreement=agreement, null_set_alarms=set_alarms,
    )  # fmt: skip


def test_the_verdict_is_calibrated_on_the_null_models() -> None:
    # Three of four attacks agree on 7; no null model sees three agree: the consensus decides.
    assert _result([1, 2, 2, 1, 2, 1, 1, 2, 2, 1], set_alarms=5).verdict()[0] == (7,)
    # Half the null models see as much agreement: the consensus is no evidence, and the one
    # calibrated set rule decides only when the set rules together rarely fire on null models.
    uncalibrated = [3, 3, 3, 3, 3, 1, 1, 1, 1, 1]
    assert _result(uncalibrated, set_alarms=1).verdict()[0] == (7,)
    noisy = _result(uncalibrated, set_alarms=4)
    assert noisy.verdict()[0] == ()
    assert "Verdict: nothing" in noisy.summary()
    # A set rule firing on 3 of 10 null models is not calibrated evidence at all.
    assert _result(uncalibrated, set_alarms=0, gap_alarms=3).evidence() == {}
    # The result survives its JSON form.
    again = AuditResult.from_dict(json.loads(json.dumps(noisy.to_dict())))
    assert again.verdict() == noisy.verdict()
