"""The CPU backend redirects megatron-core's CUDA calls, and undoes it cleanly."""
import pytest
import torch

from megatron_kanana.mcore import cpu_backend

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU backend is off on GPU machines")


@pytest.fixture
def backend():
    cpu_backend.enable()
    yield
    cpu_backend.disable()


def test_cuda_placement_lands_on_cpu(backend):
    x = torch.empty(3, device="cuda")
    assert x.device.type == "cpu"
    assert torch.zeros(2, device=torch.device("cuda", 0)).device.type == "cpu"
    assert torch.ones(2, device=torch.cuda.current_device()).device.type == "cpu"
    assert x.cuda() is x
    assert x.to("cuda").device.type == "cpu"
    assert x.to(torch.float64).dtype == torch.float64  # dtype conversions untouched
    assert x.type() == "torch.cuda.FloatTensor"
    assert torch.empty(2, pin_memory=True).device.type == "cpu"


def test_cuda_rng_is_the_cpu_generator(backend):
    from megatron.core.tensor_parallel import random as mcore_random

    torch.cuda.manual_seed(7)
    state = torch.cuda.get_rng_state()
    a = torch.rand(4)
    mcore_random._set_cuda_rng_state(state)
    assert torch.equal(torch.rand(4), a)


def test_disable_restores_torch():
    original = torch.cuda.current_device
    cpu_backend.enable()
    assert cpu_backend.is_enabled()
    cpu_backend.disable()
    assert not cpu_backend.is_enabled()
    assert torch.cuda.current_device is original
    assert torch.empty(1).type() == "torch.FloatTensor"
    with pytest.raises((RuntimeError, AssertionError)):
        torch.empty(1, device="cuda")


def test_in_this_thread_covers_other_threads(backend):
    import threading

    devices = {}

    def place():
        with cpu_backend.in_this_thread():
            devices["thread"] = torch.empty(1, device="cuda").device.type

    thread = threading.Thread(target=place)
    thread.start()
    thread.join(timeout=30)
    assert devices == {"thread": "cpu"}
