"""generate(): per-seed images, batch-size independence, resume, zip output, full disk, manifest."""

import errno
import json
import math
import os
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from sidbench import images as imgio
from sidbench.errors import ConfigError, DatasetError, SidbenchError
from sidbench.generation import MANIFEST, generate
from sidbench.nets.sampler import edm_sampler
from tests.generation._nets import GaussDenoiser


def pngs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


def run(out, seeds="0-9", **kw):
    kw.setdefault("num_steps", 4)
    kw.setdefault("progress", False)
    return generate(kw.pop("net", None) or GaussDenoiser(), out, seeds, **kw)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """Uninterrupted run, seeds 0-9, batch 10: the bytes every other run must reproduce."""
    out = tmp_path_factory.mktemp("fresh") / "imgs"
    run(out, batch_size=10)
    return pngs(out)


def test_images_follow_seed_and_sampler(tmp_path, fresh):
    assert sorted(fresh) == [f"{s:06d}.png" for s in range(10)]
    net = GaussDenoiser()
    for s in (0, 7):
        z = torch.randn([1, 3, 4, 4], generator=torch.Generator().manual_seed(s))
        expected = imgio.quantize(edm_sampler(net, z, num_steps=4))[0].numpy()
        got = imgio.decode_image(fresh[f"{s:06d}.png"])
        assert np.array_equal(got, expected)
    assert fresh["000000.png"] != fresh["000001.png"]


def test_batch_size_independence(tmp_path, fresh):
    for b in (1, 3):
        summary = run(tmp_path / f"b{b}", batch_size=b)
        assert summary.written == 10 and summary.skipped == 0 and summary.nfe == 7
        assert pngs(tmp_path / f"b{b}") == fresh
    run(tmp_path / "seven", seeds="7", batch_size=5)
    assert pngs(tmp_path / "seven") == {"000007.png": fresh["000007.png"]}


def test_resume_rewrites_only_missing_and_corrupt(tmp_path, fresh):
    out = tmp_path / "imgs"
    run(out, seeds="0-4", batch_size=2)  # a first, partial run
    (out / "000002.png").unlink()
    data = (out / "000003.png").read_bytes()
    (out / "000003.png").write_bytes(data[: len(data) // 2])  # truncated by a crash
    (out / ".000009.png.abc.tmp").write_bytes(b"junk")  # temp file of a killed run
    untouched = {n: (out / n).stat().st_ino for n in ("000000.png", "000001.png", "000004.png")}
    summary = run(out, seeds="0-9", batch_size=4)
    assert summary.written == 7 and summary.skipped == 3  # 2, 3 and 5..9
    assert pngs(out) == fresh
    assert {n: (out / n).stat().st_ino for n in untouched} == untouched
    assert not list(out.glob(".*.tmp"))
    again = run(out, seeds="0-9")
    assert again.written == 0 and again.skipped == 10


def test_done_seeds_ignores_corrupt_and_foreign_files(tmp_path, fresh):
    (tmp_path / "000001.png").write_bytes(fresh["000001.png"])
    (tmp_path / "000002.png").write_bytes(fresh["000002.png"][:-20])  # IEND and a CRC lost
    (tmp_path / "000004.png").write_bytes(fresh["000004.png"][:-30] + fresh["000004.png"][-12:])  # IDAT cut
    (tmp_path / "000003.png").write_bytes(b"")
    (tmp_path / "notes.png").write_bytes(fresh["000001.png"])
    (tmp_path / "12.png").write_bytes(fresh["000001.png"])
    assert imgio.done_seeds(tmp_path, delete_bad=False) == {1}
    assert (tmp_path / "000002.png").exists()
    assert imgio.done_seeds(tmp_path) == {1}
    assert sorted(p.name for p in tmp_path.glob("0*.png")) == ["000001.png"]


def test_zip_output_complete_and_resumable(tmp_path, fresh, monkeypatch):
    out = tmp_path / "imgs.zip"
    run(out, batch_size=3)
    assert not Path(f"{out}.partial").exists()
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
        assert sorted(n for n in names if n.endswith(".png")) == sorted(fresh)
        assert all(zf.read(n) == fresh[n] for n in fresh)
        assert MANIFEST in names
    assert imgio.load_image_folder(out).shape == (10, 3, 4, 4)
    reference = out.read_bytes()
    assert run(out).written == 0  # a finished zip is complete

    # Interrupted zip run: the disk fills after 4 images; no zip appears, staging keeps them.
    out2 = tmp_path / "again.zip"
    fail_after(monkeypatch, 4)
    with pytest.raises(SidbenchError, match="4 of 10"):
        run(out2, batch_size=3)
    assert not out2.exists()
    assert len(imgio.done_seeds(Path(f"{out2}.partial"))) == 4
    monkeypatch.undo()
    summary = run(out2, batch_size=3)
    assert summary.written == 6 and summary.skipped == 4
    assert out2.read_bytes() == reference  # deterministic zip: same bytes as the fresh run
    assert not Path(f"{out2}.partial").exists()


def test_full_disk_while_packing_zip(tmp_path, fresh, monkeypatch):
    from sidbench.generation import zipout

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    out = tmp_path / "imgs.zip"
    monkeypatch.setattr(zipout, "pack_zip", no_space)
    with pytest.raises(SidbenchError, match="10 of 10"):
        run(out)
    assert not out.exists() and len(imgio.done_seeds(Path(f"{out}.partial"))) == 10
    monkeypatch.undo()
    assert run(out).written == 0
    assert imgio.load_image_folder(out).shape == (10, 3, 4, 4) and not Path(f"{out}.partial").exists()


def test_zip_extended_with_more_seeds(tmp_path, fresh):
    out = tmp_path / "imgs.zip"
    run(out, seeds="0-4")
    summary = run(out, seeds="0-9")
    assert summary.written == 5 and summary.skipped == 5
    with zipfile.ZipFile(out) as zf:
        assert {n: zf.read(n) for n in zf.namelist() if n.endswith(".png")} == fresh


def fail_after(monkeypatch, k):
    """Make the raw PNG write fill the disk after k complete images (half a file, then ENOSPC)."""
    real = imgio._write_file
    count = {"n": 0}
    lock = threading.Lock()  # PNGs are written by several threads

    def write(path, data):
        with lock:
            full = count["n"] >= k
            count["n"] += not full
        if full:
            with open(path, "wb") as f:
                f.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(path, data)

    monkeypatch.setattr(imgio, "_write_file", write)


def test_full_disk_leaves_no_partial_png(tmp_path, fresh, monkeypatch):
    out = tmp_path / "imgs"
    fail_after(monkeypatch, 4)
    with pytest.raises(SidbenchError) as info:
        run(out, batch_size=3)
    msg = str(info.value)
    assert "disk is full" in msg and "4 of 10" in msg and "rerun the same command" in msg
    names = sorted(p.name for p in out.iterdir())  # only whole PNGs (which 4 depends on thread timing)
    assert len(names) == 5 and MANIFEST in names and len(imgio.done_seeds(out, delete_bad=False)) == 4
    monkeypatch.undo()
    assert run(out, batch_size=3).written == 6
    assert pngs(out) == fresh


def test_manifest_mismatch_refused(tmp_path):
    out = tmp_path / "imgs"
    run(out, seeds="0-2")
    with pytest.raises(ConfigError, match="num_steps: 4 -> 5") as info:
        run(out, seeds="0-2", num_steps=5)
    assert "another --out" in info.value.hint
    with pytest.raises(ConfigError, match="network"):
        run(out, seeds="0-2", net=GaussDenoiser(mean=0.2))
    with pytest.raises(ConfigError, match="sampler"):
        run(out, seeds="0-2", sampler="onestep")
    assert run(out, seeds="0-2", batch_size=1).skipped == 3  # the batch size is not a setting
    zip_out = tmp_path / "imgs.zip"
    run(zip_out, seeds="0-2")
    with pytest.raises(ConfigError):
        run(zip_out, seeds="0-2", S_churn=1.0)


def test_foreign_folder_refused(tmp_path, fresh):
    (tmp_path / "000000.png").write_bytes(fresh["000000.png"])
    with pytest.raises(ConfigError, match="no generate.json"):
        run(tmp_path)


def test_onestep_conditional_fixed_class(tmp_path):
    net = GaussDenoiser(label_dim=5)
    run(tmp_path / "a", seeds="0-3", sampler="onestep", class_idx=4, net=net)
    z = torch.randn([1, 3, 4, 4], generator=torch.Generator().manual_seed(2))
    x = net(z.double() * 2.5, torch.tensor([2.5]), torch.eye(5)[[4]])
    got = imgio.decode_image((tmp_path / "a" / "000002.png").read_bytes())
    assert np.array_equal(got, imgio.quantize(x)[0].numpy())
    with pytest.raises(ConfigError):
        run(tmp_path / "b", seeds="0", class_idx=5, net=net)
    with pytest.raises(ConfigError):
        run(tmp_path / "c", seeds="0", class_idx=0)


def test_two_channel_net_refused(tmp_path):
    with pytest.raises(ConfigError, match="1 or 3 channels"):
        run(tmp_path, net=GaussDenoiser(res=1, ch=2))


def test_grayscale_png_round_trip(tmp_path):
    img = np.arange(16, dtype=np.uint8).reshape(1, 4, 4) * 15
    imgio.write_png(tmp_path / "g.png", img)
    assert np.array_equal(imgio.decode_image((tmp_path / "g.png").read_bytes()), img)
    rgb = np.random.default_rng(0).integers(0, 256, (3, 5, 4), dtype=np.uint8)
    imgio.write_png(tmp_path / "c.png", rgb)
    assert np.array_equal(imgio.load_image_folder(tmp_path, limit=1)[0], rgb)  # c.png sorts first
    with pytest.raises(DatasetError, match="shape"):
        imgio.load_image_folder(tmp_path)
    with pytest.raises(ValueError):
        imgio.write_png(tmp_path / "x.png", np.zeros((2, 4, 4), np.uint8))


def test_quantize_matches_edm_formula():
    x = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.3, 0.999, 1.0, 5.0])
    expected = [min(255, max(0, math.floor(v * 127.5 + 128))) for v in x.double().tolist()]
    assert imgio.quantize(x).tolist() == expected
    assert imgio.quantize(x).dtype == torch.uint8


def tiny_songunet(tmp_path, label_dim=0):
    """A small random-weight DDPM++ teacher (augment layer like EDM's), saved in the native format."""
    from sidbench.nets.build import build_network
    from sidbench.nets.native import save_network

    config = {"class_name": "EDMPrecond", "init_kwargs": {
        "img_resolution": 8, "img_channels": 3, "label_dim": label_dim, "use_fp16": False, "sigma_min": 0,
        "sigma_max": "inf", "sigma_data": 0.5, "model_type": "SongUNet", "embedding_type": "positional",
        "encoder_type": "standard", "decoder_type": "standard", "channel_mult_noise": 1,
        "resample_filter": [1, 1], "model_channels": 16, "channel_mult": [1, 2], "num_blocks": 1,
        "attn_resolutions": [4], "augment_dim": 9, "dropout": 0.1}}
    torch.manual_seed(0)
    net = build_network(config).eval()
    with torch.no_grad():  # wake up the zero-initialised output layers so images depend on the net
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    folder = tmp_path / "net"
    save_network(net, config, folder)
    return net, folder


def test_cli_generate_heun_with_songunet(tmp_path, capsys):
    from sidbench.cli import main
    from sidbench.nets.seeds import latents_and_labels

    net, folder = tiny_songunet(tmp_path, label_dim=3)
    out = tmp_path / "imgs.zip"
    argv = ["generate", "--teacher", str(folder), "--num", "6", "--steps", "3", "--out", str(out),
            "--batch", "4"]
    assert main(argv) == 0
    line = capsys.readouterr().out
    assert "6 images written" in line and "img/s" in line and "5 NFE" in line
    images = imgio.load_image_folder(out)
    assert images.shape == (6, 3, 8, 8)
    for batch in ([0, 1, 2, 3], [4, 5]):  # the same batches as --batch 4
        latents, labels, _ = latents_and_labels(batch, [3, 8, 8], 3)
        expected = imgio.quantize(edm_sampler(net, latents, labels, num_steps=3)).numpy()
        assert np.array_equal(images[batch], expected)
    assert len({images[i].tobytes() for i in range(6)}) == 6
    with zipfile.ZipFile(out) as zf:
        manifest = json.loads(zf.read(MANIFEST))
    record = json.loads((folder / "network.json").read_text())
    assert manifest["network"]["weights_sha256"] == record["weights_sha256"]
    assert manifest["settings"]["num_steps"] == 3 and manifest["settings"]["S_max"] == "inf"
    assert manifest["seeds"] == "0-5"
    assert main(argv) == 0 and "0 images written, 6 already done" in capsys.readouterr().out


def test_cli_generate_onestep_and_errors(tmp_path, capsys):
    from sidbench.cli import main
    from sidbench.nets.sampler import onestep_generate

    net, folder = tiny_songunet(tmp_path)
    out = tmp_path / "imgs"
    argv = ["generate", "--generator", str(folder), "--seeds", "3,5", "--num", "2", "--sampler", "onestep",
            "--out", str(out)]
    assert main(argv) == 0
    z = torch.stack([torch.randn([3, 8, 8], generator=torch.Generator().manual_seed(s)) for s in (3, 5)])
    expected = imgio.quantize(onestep_generate(net, z, sigma_init=2.5)).numpy()
    assert np.array_equal(imgio.load_image_folder(out), expected)
    capsys.readouterr()
    teacher = ["generate", "--teacher", str(folder)]
    assert main([*teacher, "--seeds", "0-5", "--num", "7", "--out", str(out)]) == 1
    assert "--num is 7" in capsys.readouterr().err
    assert main(["generate", "--teacher", str(folder), "--num", "2", "--out", str(out), "--steps", "3"]) == 1
    assert "other settings" in capsys.readouterr().err
    assert main(["generate", "--teacher", str(folder), "--out", str(tmp_path / "x")]) == 1
    assert main(["generate", "--teacher", str(folder), "--num", "1", "--class", "0", "--out",
                 str(tmp_path / "y")]) == 1
    assert "unconditional" in capsys.readouterr().err
    assert main([*teacher, "--num", "1", "--out", str(tmp_path / "z")]) == 0
    assert "35 NFE" in capsys.readouterr().out  # EDM's 18 steps by default at 8x8
    assert main(["generate", "--teacher", str(tmp_path / "nothing"), "--num", "1", "--out", str(out)]) == 1


def test_cli_bad_numbers_are_one_line_errors(tmp_path, capsys):
    """The issue's black-image settings, through the CLI: exit 1, one line, nothing written."""
    from sidbench.cli import main

    _, folder = tiny_songunet(tmp_path)
    out = tmp_path / "imgs"
    base = ["generate", "--teacher", str(folder), "--out", str(out)]
    cases = [(["--num", "2", "--sigma-min", "0"], "sigma_min"),
             (["--num", "2", "--sigma-max", "nan"], "sigma_max"),
             (["--num", "2", "--sampler", "onestep", "--sigma-init", "nan"], "sigma_init"),
             (["--num", "2", "--rho", "0"], "rho"), (["--num", "2", "--rho", "-7"], "rho"),
             (["--seeds", "0-99999999999999"], "out of range"), (["--seeds", "-5"], "negative")]
    for extra, words in cases:
        assert main([*base, *extra]) == 1, extra
        err = capsys.readouterr().err.strip()
        assert words in err and len(err.splitlines()) == 1 and "Traceback" not in err, (extra, err)
    assert not out.exists()
