"""Tests for medseg_edu.training: seeds, device choice, fit (determinism, resume, checkpoints,
early stopping, deep supervision), the validation metric, History and its plot."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, TensorDataset

from medseg_edu.models import UNet
from medseg_edu.runtime import pick_device, seed_everything
from medseg_edu.training import (EarlyStopping, History, fit, foreground_dice_score,
                                 plot_history, train_one_epoch, validate)

TINY = (4, 8, 16)


pytestmark = pytest.mark.usefixtures("one_thread")   # conftest.py: tiny tensors run fastest on one thread


def ce_loss(logits, label):
    return F.cross_entropy(logits, label[:, 0])


class DictDataset(Dataset):
    """Yields the course's batch format {"image": (C, H, W), "label": (1, H, W) int64}."""

    def __init__(self, n=12, seed=0, size=16):
        g = torch.Generator().manual_seed(seed)
        self.images = torch.randn(n, 1, size, size, generator=g)
        self.labels = (self.images > 0.5).long()

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"image": self.images[i], "label": self.labels[i], "case_id": f"case{i}"}


def make_run(epochs, **kwargs):
    seed_everything(0)
    net = UNet(2, 1, 2, features=TINY, dropout=0.1)
    train = DataLoader(DictDataset(12, 0), batch_size=4, shuffle=True)
    val = DataLoader(DictDataset(4, 1), batch_size=2)
    kwargs.setdefault("seed", 0)
    history = fit(net, train, val, loss_fn=ce_loss, epochs=epochs, device="cpu", progress=False, **kwargs)
    return net, history


# ----------------------------------------------------------------------------- seeds and devices
def test_seed_everything_repeats_all_generators():
    import random
    seed_everything(123)
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    seed_everything(123)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a
    with pytest.raises(ValueError, match="seed must be an int"):
        seed_everything(-1)


def test_seed_everything_deterministic_flags():
    old = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
           torch.are_deterministic_algorithms_enabled(),
           torch.is_deterministic_algorithms_warn_only_enabled())
    try:
        seed_everything(0, deterministic=True)
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = old[:2]
        torch.use_deterministic_algorithms(old[2], warn_only=old[3])


def test_pick_device(capsys):
    assert pick_device("cpu") == torch.device("cpu")
    assert "Using CPU (as requested)" in capsys.readouterr().out
    auto = pick_device("auto")
    expected = "cuda" if torch.cuda.is_available() else (
        "mps" if torch.backends.mps.is_available() else "cpu")
    assert auto.type == expected
    assert "Using" in capsys.readouterr().out
    with pytest.raises(ValueError, match="device must be 'auto', 'cpu'"):
        pick_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the fallback without CUDA")
def test_pick_device_falls_back_without_cuda(capsys):
    assert pick_device("cuda") == torch.device("cpu")
    assert "not available here, falling back" in capsys.readouterr().out


# ----------------------------------------------------------------------------- validation metric
def test_foreground_dice_hand_worked():
    # class 1: pred {0,1}, target {1,2}: 2*1/(2+2) = 0.5; class 2: absent in both -> skipped
    label = torch.tensor([[0, 1, 1, 0]]).reshape(1, 1, 1, 4)
    pred = torch.tensor([[1, 1, 0, 0]])
    logits = F.one_hot(pred, 3).permute(0, 2, 1).reshape(1, 3, 1, 4).float()
    assert foreground_dice_score(logits, label).tolist() == [0.5]
    # all-background case: NaN (fit ignores it)
    empty = torch.zeros(1, 1, 1, 4, dtype=torch.long)
    assert math.isnan(foreground_dice_score(torch.zeros(1, 3, 1, 4), empty).item())
    # one channel = binary with logit > 0: pred {1}, target {1, 2} -> 2/3
    binary = torch.tensor([-1.0, 2.0, -3.0, -1.0]).reshape(1, 1, 1, 4)
    assert foreground_dice_score(binary, label).item() == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match=r"label must have shape \(N, 1, \*spatial\)"):
        foreground_dice_score(torch.zeros(1, 3, 1, 4), torch.zeros(1, 1, 4, dtype=torch.long))


def test_foreground_dice_matches_monai():
    metrics = pytest.importorskip("monai.metrics")
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, 8, 8, generator=g)
    label = torch.randint(0, 4, (3, 1, 8, 8), generator=g)
    pred = F.one_hot(logits.argmax(1), 4).permute(0, 3, 1, 2)
    ref_per_case = metrics.compute_dice(pred, F.one_hot(label[:, 0], 4).permute(0, 3, 1, 2),
                                        include_background=False).nanmean(1)
    torch.testing.assert_close(foreground_dice_score(logits, label), ref_per_case.double())


# ----------------------------------------------------------------------------- fit
def test_fit_learns_and_history_shape():
    net, history = make_run(3, lr=1e-2)
    assert len(history) == 3
    frame = history.to_frame()
    assert list(frame.columns) == ["train_loss", "val_loss", "val_dice", "lr", "seconds"]
    assert list(frame.index) == [1, 2, 3]
    assert history.train_loss[-1] < history.train_loss[0]
    assert history.lr == [1e-2] * 3
    assert all(0.0 <= d <= 1.0 for d in history.val_dice)


def test_fit_is_deterministic_on_cpu():
    _, a = make_run(2)
    _, b = make_run(2)
    np.testing.assert_allclose(a.train_loss, b.train_loss, rtol=0, atol=1e-6)
    np.testing.assert_allclose(a.val_loss, b.val_loss, rtol=0, atol=1e-6)


def test_resume_equals_straight_run(tmp_path):
    net4, straight = make_run(4)
    make_run(2, checkpoint_dir=tmp_path)
    net_resumed, resumed = make_run(4, checkpoint_dir=tmp_path, resume=tmp_path)
    np.testing.assert_allclose(resumed.train_loss, straight.train_loss, rtol=0, atol=1e-6)
    np.testing.assert_allclose(resumed.val_dice, straight.val_dice, rtol=0, atol=1e-6)
    for p, q in zip(net4.parameters(), net_resumed.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)


def test_checkpoint_contents(tmp_path):
    _, history = make_run(2, checkpoint_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]   # no temp files left
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    assert {"format", "format_version", "model_class", "model_args", "model", "optimizer_class", "optimizer",
            "scaler", "epoch", "history", "config", "rng"} <= set(ckpt)
    assert ckpt["epoch"] == 2
    assert ckpt["history"]["train_loss"] == history.train_loss
    assert ckpt["model_class"] == "medseg_edu.models.unet.UNet"
    assert ckpt["model_args"]["features"] == list(TINY) and ckpt["model_args"]["dropout"] == 0.1
    assert ckpt["optimizer_class"] == "torch.optim.adam.Adam"
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert best["epoch"] == history.best_epoch


def test_resume_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at .*last.pt"):
        make_run(1, resume=tmp_path)


def test_early_stopping():
    # lr = 0 -> the model never changes -> val Dice never improves after epoch 1
    _, history = make_run(10, lr=0.0, callbacks=[EarlyStopping(2)])
    assert history.best_epoch == 1
    assert len(history) == 3
    with pytest.raises(ValueError, match="patience must be a positive int, got 0"):
        EarlyStopping(0)


def test_tuple_batches_max_steps_and_no_validation():
    seed_everything(0)
    net = UNet(2, 1, 2, features=TINY)
    x = torch.randn(20, 1, 16, 16)
    seen = []

    def loss_fn(logits, label):
        seen.append(len(logits))
        return ce_loss(logits, label)

    loader = DataLoader(TensorDataset(x, (x > 0).long()), batch_size=2)
    history = fit(net, loader, loss_fn=loss_fn, epochs=2, max_steps=3, device="cpu", progress=False)
    assert len(seen) == 6                      # 3 steps per epoch, 2 epochs
    assert all(math.isnan(v) for v in history.val_dice)
    assert history.best_epoch is not None      # monitored: train loss


def test_fit_with_deep_supervision():
    seed_everything(0)
    net = UNet(2, 1, 2, features=TINY, deep_supervision=True)
    loader = DataLoader(DictDataset(8, 0), batch_size=4)
    history = fit(net, loader, loader, loss_fn=ce_loss, epochs=1, device="cpu", progress=False)
    assert len(history) == 1 and not math.isnan(history.val_loss[0])


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(epochs=0), ValueError, "epochs must be a positive int, got 0"),
    (dict(epochs=1, max_steps=0), ValueError, "max_steps must be None or a positive int"),
    (dict(epochs=1, amp="yes"), ValueError, "amp must be 'auto', True or False"),
    (dict(epochs=1, loss_fn="dice"), TypeError, "loss_fn must be callable"),
])
def test_fit_bad_arguments(kwargs, error, match):
    kwargs.setdefault("loss_fn", ce_loss)
    loader = DataLoader(DictDataset(4), batch_size=2)
    with pytest.raises(error, match=match):
        fit(UNet(2, 1, 2, features=TINY), loader, device="cpu", progress=False, **kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU error")
def test_amp_true_needs_cuda():
    loader = DataLoader(DictDataset(4), batch_size=2)
    with pytest.raises(ValueError, match="amp=True needs a CUDA device, got cpu"):
        fit(UNet(2, 1, 2, features=TINY), loader, loss_fn=ce_loss, epochs=1, amp=True, device="cpu")


def test_bad_batch_format():
    with pytest.raises(ValueError, match="needs keys 'image' and 'label'"):
        fit(UNet(2, 1, 2, features=TINY), [{"img": torch.zeros(1, 1, 16, 16)}], loss_fn=ce_loss,
            epochs=1, device="cpu", progress=False)


def test_plot_history():
    history = History(train_loss=[1.0, 0.5], val_loss=[1.1, 0.7], val_dice=[0.2, 0.6], lr=[1e-3] * 2,
                      seconds=[1.0, 1.0], best_epoch=2, best_score=0.6)
    fig = plot_history(history)
    ax_loss, ax_dice = fig.axes
    assert len(ax_loss.lines) == 2
    np.testing.assert_allclose(ax_dice.lines[0].get_ydata(), [0.2, 0.6])
    with pytest.raises(TypeError, match="history must be a History"):
        plot_history({"train_loss": [1.0]})


# ----------------------------------------------------------------------------- GPU (skipped on CPU)
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("amp", [False, "auto"])
def test_fit_on_cuda(amp, tmp_path):
    seed_everything(0, deterministic=True)
    net = UNet(2, 1, 2, features=TINY)
    loader = DataLoader(DictDataset(8, 0), batch_size=4)
    history = fit(net, loader, loader, loss_fn=ce_loss, epochs=2, device="cuda", amp=amp,
                  checkpoint_dir=tmp_path, progress=False)
    assert next(net.parameters()).device.type == "cuda"
    assert all(math.isfinite(v) for v in history.train_loss)
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    amp_used = ckpt["config"]["amp"]
    if amp is False:
        assert amp_used == "off"
    else:
        assert amp_used == ("bfloat16" if torch.cuda.is_bf16_supported() else "float16")
        assert (ckpt["scaler"] is not None) == (amp_used == "float16")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_amp_loss_close_to_fp32():
    seed_everything(0)
    net = UNet(2, 1, 2, features=TINY).cuda()
    x = torch.randn(4, 1, 32, 32, device="cuda")
    label = (x > 0).long()
    fp32 = ce_loss(net(x), label)
    with torch.autocast("cuda", dtype=torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16):
        low = ce_loss(net(x).float(), label)
    assert abs(float(fp32) - float(low)) < 0.05


def test_foreground_dice_agrees_with_metrics_dice_score():
    metrics = pytest.importorskip("medseg_edu.metrics")
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 6, 6, generator=g)
    label = torch.randint(0, 3, (2, 1, 6, 6), generator=g)
    pred = logits.argmax(1)
    expected = [np.nanmean([metrics.dice_score((pred[i] == k).numpy(), (label[i, 0] == k).numpy())
                            for k in (1, 2)]) for i in range(2)]
    np.testing.assert_allclose(foreground_dice_score(logits, label).numpy(), expected, atol=1e-12)


# ----------------------------------------------------------------------------- steps, weights, callbacks
class WeightedDicts(DictDataset):
    def __init__(self, weights, **kwargs):
        super().__init__(len(weights), **kwargs)
        self.weights = torch.tensor(weights, dtype=torch.float32)

    def __getitem__(self, i):
        return {**super().__getitem__(i), "weight": self.weights[i]}


def ce_per_sample(logits, label):
    return F.cross_entropy(logits, label[:, 0], reduction="none").mean(dim=(1, 2))


def one_sgd_step(data, loss_fn, batch_size):
    seed_everything(0)
    net = UNet(2, 1, 2, features=TINY)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    train_one_epoch(net, DataLoader(data, batch_size=batch_size), optimizer, loss_fn=loss_fn, max_steps=1)
    return net


def test_weight_zero_drops_a_sample_and_equal_weights_change_nothing():
    # hand-worked: the weighted mean with weights (1, 0) is the loss of sample 0 alone, and with equal
    # weights (2, 2) it is the plain mean; one SGD step from the same start must then give the same weights
    # (up to float32 rounding of the sums: 1e-6 is far below the step size 0.5 * gradient ~ 1e-2)
    alone = one_sgd_step(DictDataset(1, seed=0), ce_loss, 1)
    dropped = one_sgd_step(WeightedDicts([1.0, 0.0], seed=0), ce_per_sample, 2)
    plain = one_sgd_step(DictDataset(2, seed=0), ce_loss, 2)
    equal = one_sgd_step(WeightedDicts([2.0, 2.0], seed=0), ce_per_sample, 2)
    for a, b in zip(alone.parameters(), dropped.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    for a, b in zip(plain.parameters(), equal.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert not all(torch.allclose(a, b) for a, b in zip(alone.parameters(), plain.parameters()))


def test_weights_need_a_per_sample_loss_and_sane_values():
    net = UNet(2, 1, 2, features=TINY)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"loss_fn must return a scalar or one loss per sample, shape \(2,\), got "
                                         r"shape \(\).*per_sample_loss"):
        train_one_epoch(net, DataLoader(WeightedDicts([1.0, 1.0]), batch_size=2), optimizer, loss_fn=ce_loss)
    with pytest.raises(ValueError, match="batch 'weight' must hold 2 finite, non-negative numbers"):
        train_one_epoch(net, DataLoader(WeightedDicts([1.0, -1.0]), batch_size=2), optimizer,
                        loss_fn=ce_per_sample)


def test_validate_matches_a_hand_computed_mean():
    seed_everything(0)
    net = UNet(2, 1, 2, features=TINY).eval()
    data = DictDataset(6, seed=3)
    val_loss, val_score = validate(net, DataLoader(data, batch_size=4), loss_fn=ce_loss)
    with torch.no_grad():
        logits = net(data.images)
    expected_loss = float(F.cross_entropy(logits, data.labels[:, 0]))      # equal-sized images: one mean
    expected_score = float(np.nanmean(foreground_dice_score(logits, data.labels).numpy()))
    assert abs(val_loss - expected_loss) < 1e-5      # float32 batch sums in another order
    assert abs(val_score - expected_score) < 1e-9    # the same float64 values, summed in another order


def test_callbacks_see_every_epoch_and_can_stop():
    seen = []

    def record(model, epoch, history):
        seen.append((epoch, len(history), isinstance(model, UNet)))
        return epoch == 3

    _, history = make_run(10, callbacks=[record])
    assert seen == [(1, 1, True), (2, 2, True), (3, 3, True)]
    assert len(history) == 3
    with pytest.raises(TypeError, match="callbacks must be callables"):
        make_run(1, callbacks=["stop"])


def test_scheduler_steps_each_epoch_and_resumes(tmp_path):
    def run(epochs, **kwargs):
        seed_everything(0)
        net = UNet(2, 1, 2, features=TINY)
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
        train = DataLoader(DictDataset(8, 0), batch_size=4, shuffle=True)
        return fit(net, train, loss_fn=ce_loss, epochs=epochs, optimizer=optimizer, scheduler=scheduler,
                   device="cpu", progress=False, seed=0, **kwargs)

    straight = run(3)
    np.testing.assert_allclose(straight.lr, [1e-2, 5e-3, 2.5e-3], rtol=1e-12)
    run(2, checkpoint_dir=tmp_path)
    resumed = run(3, resume=tmp_path)
    np.testing.assert_allclose(resumed.lr, straight.lr, rtol=1e-12)
    np.testing.assert_allclose(resumed.train_loss, straight.train_loss, rtol=0, atol=1e-6)
