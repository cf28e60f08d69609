"""Tests for medseg_edu.checkpoint: one format for fit's last.pt/best.pt, the demo's model.pt and the
shipped pretrained networks; load_checkpoint rebuilds the model from any of them, and every bad file
gives an error that names the file and the reason."""
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from medseg_edu.checkpoint import FORMAT_VERSION, load_checkpoint, read_checkpoint, save_checkpoint
from medseg_edu.models import PSPNet, UNet, UNetPlusPlus
from medseg_edu.models.pretrained import PRETRAINED_DIR
from medseg_edu.runtime import seed_everything
from medseg_edu.training import fit

TINY = (4, 8, 16)


pytestmark = pytest.mark.usefixtures("one_thread")   # conftest.py: tiny tensors run fastest on one thread


def same_weights(a: nn.Module, b: nn.Module, atol: float = 0.0) -> bool:
    # float32 weights saved as float32 come back bit for bit, so atol=0 is the right check there
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.allclose(sa[k].float(), sb[k].float(), rtol=0, atol=atol)
                                          for k in sa)


def tiny_fit(out, *, epochs=1, optimizer=None, resume=None):
    seed_everything(0)
    net = UNet(2, 1, 2, features=TINY)
    x = torch.randn(8, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    loader = DataLoader(TensorDataset(x, (x > 0.5).long()), batch_size=4)
    opt = optimizer(net.parameters()) if optimizer else None
    fit(net, loader, loader, loss_fn=lambda p, t: F.cross_entropy(p, t[:, 0]), epochs=epochs, optimizer=opt,
        checkpoint_dir=out, resume=resume, device="cpu", progress=False)
    return net


# ----------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("cls,kwargs", [(UNet, dict(attention=True, dropout=0.2, norm="batch")),
                                        (UNetPlusPlus, {}), (PSPNet, dict(bins=(1, 2)))])
def test_every_model_class_round_trips(tmp_path, cls, kwargs):
    torch.manual_seed(0)
    net = cls(2, 3, 2, features=TINY, **kwargs)
    save_checkpoint(net, tmp_path / "net.pt")
    back = load_checkpoint(tmp_path / "net.pt")
    assert type(back) is cls and back.config == net.config and not back.training
    assert same_weights(net, back)


def test_fit_checkpoints_round_trip(tmp_path):
    net = tiny_fit(tmp_path, epochs=2)
    for name in ("last.pt", "best.pt"):
        back = load_checkpoint(tmp_path / name)
        assert isinstance(back, UNet) and back.config["features"] == list(TINY)
    assert same_weights(net, load_checkpoint(tmp_path / "last.pt"))


@pytest.mark.parametrize("name", ["brain2d_unet", "brain3d_unet", "skin2d_unet"])
def test_pretrained_files_are_in_the_format(name):
    ckpt = read_checkpoint(PRETRAINED_DIR / f"{name}.pt")
    assert ckpt["model_class"] == "medseg_edu.models.unet.UNet" and ckpt["optimizer"] is None
    assert all(v.dtype == torch.float16 for v in ckpt["model"].values() if v.is_floating_point())
    net = load_checkpoint(PRETRAINED_DIR / f"{name}.pt")
    assert all(p.dtype == torch.float32 for p in net.parameters())


def test_float16_storage_rounds_the_weights(tmp_path):
    torch.manual_seed(0)
    net = UNet(2, 1, 2, features=TINY)
    save_checkpoint(net, tmp_path / "half.pt", dtype=torch.float16)
    back = load_checkpoint(tmp_path / "half.pt")
    # float16 keeps 11 significant bits: a relative error below 2**-11 on weights of size < 2
    assert same_weights(net, back, atol=2 ** -10) and not same_weights(net, back)


def test_model_without_config_loads_into_a_given_model(tmp_path):
    net = nn.Sequential(nn.Conv2d(1, 2, 3))
    save_checkpoint(net, tmp_path / "seq.pt")
    with pytest.raises(ValueError, match=r"seq\.pt: saved without constructor arguments"):
        load_checkpoint(tmp_path / "seq.pt")
    back = load_checkpoint(tmp_path / "seq.pt", model=nn.Sequential(nn.Conv2d(1, 2, 3)))
    assert same_weights(net, back)


# ----------------------------------------------------------------------------- bad files
def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nope.pt")) + ": no checkpoint file"):
        load_checkpoint(tmp_path / "nope.pt")


def test_empty_file(tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.pt: the checkpoint file is empty"):
        load_checkpoint(tmp_path / "empty.pt")


def test_truncated_file(tmp_path):
    save_checkpoint(UNet(2, 1, 2, features=TINY), tmp_path / "full.pt")
    data = (tmp_path / "full.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.pt: cannot be read as a PyTorch checkpoint \(truncated, corrupt"):
        load_checkpoint(tmp_path / "cut.pt")


def test_another_programs_file(tmp_path):
    (tmp_path / "notes.pt").write_text("these are not weights\n")
    with pytest.raises(ValueError, match=r"notes\.pt: cannot be read as a PyTorch checkpoint"):
        load_checkpoint(tmp_path / "notes.pt")


def test_bare_state_dict(tmp_path):
    torch.save(UNet(2, 1, 2, features=TINY).state_dict(), tmp_path / "bare.pt")
    with pytest.raises(ValueError, match=r"bare\.pt: it holds a bare state_dict"):
        load_checkpoint(tmp_path / "bare.pt")


def test_foreign_dict_and_pickled_objects(tmp_path):
    torch.save({"epoch": 3, "weights": [1, 2]}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"other\.pt: it is not a medseg-edu checkpoint \(no 'format' key"):
        load_checkpoint(tmp_path / "other.pt")
    torch.save({"net": nn.Linear(2, 2)}, tmp_path / "pickled.pt")      # a whole module: needs pickle
    with pytest.raises(ValueError, match=r"pickled\.pt: not a medseg-edu checkpoint: it holds Python objects"):
        load_checkpoint(tmp_path / "pickled.pt")


def test_newer_format_version(tmp_path):
    save_checkpoint(UNet(2, 1, 2, features=TINY), tmp_path / "new.pt")
    ckpt = torch.load(tmp_path / "new.pt", weights_only=True)
    ckpt["format_version"] = FORMAT_VERSION + 1
    torch.save(ckpt, tmp_path / "new.pt")
    with pytest.raises(ValueError, match=rf"new\.pt: written by checkpoint format version {FORMAT_VERSION + 1}, "
                                         rf"newer than this medseg-edu reads \({FORMAT_VERSION}\)"):
        load_checkpoint(tmp_path / "new.pt")


def test_class_that_is_not_a_module(tmp_path):
    save_checkpoint(UNet(2, 1, 2, features=TINY), tmp_path / "evil.pt")
    ckpt = torch.load(tmp_path / "evil.pt", weights_only=True)
    ckpt["model_class"], ckpt["model_args"] = "subprocess.Popen", {"args": ["true"]}
    torch.save(ckpt, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match=r"evil\.pt: model_class 'subprocess.Popen' is not a torch.nn.Module"):
        load_checkpoint(tmp_path / "evil.pt")


def test_weights_of_another_shape(tmp_path):
    save_checkpoint(UNet(2, 1, 2, features=TINY), tmp_path / "unet.pt")
    with pytest.raises(ValueError, match=r"unet\.pt: the saved weights do not fit this UNet"):
        load_checkpoint(tmp_path / "unet.pt", model=UNet(2, 1, 3, features=TINY))


def test_args_must_be_plain_values(tmp_path):
    with pytest.raises(TypeError, match="model_args\\['act'\\] must hold only plain values"):
        save_checkpoint(UNet(2, 1, 2, features=TINY), tmp_path / "x.pt", model_args={"act": nn.ReLU()})
    assert not (tmp_path / "x.pt").exists()


# ----------------------------------------------------------------------------- resuming fit
def test_resume_with_another_optimizer_is_a_clear_error(tmp_path):
    tiny_fit(tmp_path)
    with pytest.raises(ValueError, match=r"last\.pt: saved with optimizer torch\.optim\.adam\.Adam but resumed "
                                         r"with torch\.optim\.sgd\.SGD"):
        tiny_fit(tmp_path, epochs=2, optimizer=lambda p: torch.optim.SGD(p, lr=0.1), resume=tmp_path)


def test_resume_from_a_model_only_checkpoint(tmp_path):
    save_checkpoint(UNet(2, 1, 2, features=TINY), tmp_path / "model.pt")
    with pytest.raises(ValueError, match=r"model\.pt: holds a model only .* cannot resume"):
        tiny_fit(tmp_path / "run", epochs=2, resume=tmp_path / "model.pt")
