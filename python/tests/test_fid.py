"""test_fid.py -- ddpm.fid against images, a Dataset and an .npz of statistics (written by `ddpm eval
fid`'s statistics command), its dataclass, and bad inputs."""
import numpy as np
import pytest

import ddpm
from conftest import cli


@pytest.fixture(scope="module")
def fmnist():
    with ddpm.Dataset(split="test", limit=300) as d:
        yield d.images()[0], d


def test_fid_of_images(fmnist):
    x, _ = fmnist
    q = ddpm.fid(x[:150], x[150:])
    assert isinstance(q, ddpm.Quality) and q.features == "fmnist" and q.label == "FID (F-MNIST features)"
    assert 0 < q.fid < 50 and 0 <= q.precision <= 1 and 0 <= q.recall <= 1 and q.n == 150 and q.n_ref == 150
    assert q.inception_score is None  # F-MNIST features give no Inception Score
    same = ddpm.fid(x[:150], x[:150])
    assert abs(same.fid) < 1e-3 and same.precision == 1 and same.recall == 1
    noise = np.random.default_rng(0).uniform(-1, 1, x[:150].shape).astype(np.float32)
    n = ddpm.fid(noise, x[150:])
    assert n.fid > 10 * q.fid
    # Broken images: noise is (all of it, as noisy), real images seldom (beyond the extremes of only
    # 150 reference images: about 3 / 151 of them expected, 7 of 150 here).
    assert n.broken == 1 and n.broken_by["noisy"] == 1 and q.broken <= 0.08
    u = np.floor((x[:150] + 1) * 127.5 + 0.5).astype(np.uint8).transpose(0, 2, 3, 1)
    assert abs(ddpm.fid(u, x[150:]).fid - q.fid) < 1e-6  # uint8 NHWC of the same pixels


def test_fid_against_a_dataset_and_statistics(fmnist, tmp_path):
    x, d = fmnist
    q = ddpm.fid(x[:100], d)
    assert q.n_ref == 300 and q.fid > 0
    stats = tmp_path / "ref.npz"
    r = cli("eval", "stats", "--data", "fashion-mnist", "--split", "test", "--n", 300, "--batch", 64, "--out", stats)
    assert r.returncode == 0, r.stderr
    s = ddpm.fid(x[:100], stats)
    assert s.features == "fmnist" and abs(s.fid - q.fid) < 1e-6 * max(1, q.fid)
    assert q.broken is not None and s.broken == q.broken  # the statistics file keeps the looks


def test_fid_progress_and_bad_inputs(fmnist, tmp_path):
    x, _ = fmnist
    seen = []
    ddpm.fid(x[:20], x[20:40], progress=lambda d, t: seen.append(t))
    assert seen and set(seen) == {20}
    with pytest.raises(ddpm.CancelledError):
        ddpm.fid(x[:20], x[20:40], progress=lambda d, t: True)
    with pytest.raises(ValueError, match="features"):
        ddpm.fid(x[:20], x[20:40], features="vgg")
    with pytest.raises(ValueError, match="like with like"):
        ddpm.fid(x[:20], np.zeros((5, 3, 28, 28), dtype=np.float32))
    with pytest.raises(ValueError, match="at least 2"):
        ddpm.fid(x[:1], x[20:40])
    with pytest.raises(ddpm.ArgumentError):
        ddpm.fid(np.zeros((4, 1, 8, 8), dtype=np.float32), np.zeros((4, 1, 8, 8), dtype=np.float32),
                 features="fmnist")  # F-MNIST features take 28x28 images
    with pytest.raises(ddpm.InputError):
        ddpm.fid(x[:20], tmp_path / "missing.npz")
    with pytest.raises(ddpm.InputError, match="Inception|inception"):
        ddpm.fid(x[:20], x[20:40], features="inception", inception=tmp_path / "none.safetensors")
    with pytest.raises(TypeError):
        ddpm.fid(x[:20].astype(np.float64), x[20:40])
