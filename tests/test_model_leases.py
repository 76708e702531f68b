"""Model leases on the tiny real models: an unload waits for the batch holding the engine, batches that start
meanwhile wait and then load the model again, and idle unloading goes by when a batch last used the model."""

from __future__ import annotations

import threading
import time

from service.config import Settings
from service.engines.base import GenerationSettings
from service.engines.manager import ModelManager

AR = "translate:ar-en"
GEN = GenerationSettings(beam_size=1, max_output_tokens=8, max_input_tokens=100)
TEXT = "التقى الوزير بنظيره في القاهرة."


def test_unload_waits_for_the_batch_in_flight_and_the_next_batch_loads_again(settings: Settings) -> None:
    manager = ModelManager(settings)
    leased, release, unloaded = threading.Event(), threading.Event(), threading.Event()
    outputs: list[str] = []

    def batch() -> None:
        with manager.lease(AR) as engine:
            leased.set()
            release.wait(timeout=60)
            outputs.extend(engine.generate([TEXT], GEN))  # the engine is still whole: the unload is waiting

    def unload() -> None:
        assert manager.unload(AR)
        unloaded.set()

    running = threading.Thread(target=batch)
    running.start()
    assert leased.wait(timeout=60)
    unloader = threading.Thread(target=unload)
    unloader.start()
    assert not unloaded.wait(timeout=0.5)  # held back by the batch
    release.set()
    running.join(timeout=60)
    unloader.join(timeout=60)
    assert unloaded.is_set() and outputs and outputs[0]
    assert manager.loaded() == [] and manager.load_count == 1
    with manager.lease(AR) as engine:  # the next batch loads it again
        assert engine.generate([TEXT], GEN)[0]
    assert manager.load_count == 2


def test_a_batch_starting_during_an_unload_waits_for_it_and_gets_a_fresh_engine(settings: Settings) -> None:
    manager = ModelManager(settings)
    leased, release = threading.Event(), threading.Event()
    engines: list[object] = []

    def first() -> None:
        with manager.lease(AR) as engine:
            engines.append(engine)
            leased.set()
            release.wait(timeout=60)

    def second() -> None:
        with manager.lease(AR) as engine:
            engines.append(engine)
            assert engine.generate([TEXT], GEN)[0]

    holder = threading.Thread(target=first)
    holder.start()
    assert leased.wait(timeout=60)
    unloader = threading.Thread(target=manager.unload, args=(AR,))
    unloader.start()
    time.sleep(0.2)  # the unload is now waiting for `first`
    late = threading.Thread(target=second)
    late.start()
    time.sleep(0.2)
    assert len(engines) == 1  # `second` waits for the unload rather than borrowing the engine being freed
    release.set()
    for thread in (holder, unloader, late):
        thread.join(timeout=60)
    assert len(engines) == 2 and engines[0] is not engines[1] and manager.load_count == 2


def test_a_thread_holding_a_lease_may_lease_again_while_an_unload_waits(settings: Settings) -> None:
    manager = ModelManager(settings)
    with manager.lease(AR) as outer:
        unloader = threading.Thread(target=manager.unload, args=(AR,))
        unloader.start()
        time.sleep(0.2)
        with manager.lease(AR) as inner:  # no deadlock: its own lease keeps the model loaded
            assert inner is outer and inner.generate([TEXT], GEN)[0]
    unloader.join(timeout=60)
    assert not unloader.is_alive() and manager.loaded() == []


def test_idle_unload_goes_by_the_last_batch(settings: Settings) -> None:
    idle = 0.3
    manager = ModelManager(settings.model_copy(update={"model_idle_unload_seconds": idle}))
    with manager.lease(AR):
        time.sleep(idle + 0.1)
        assert manager.unload_idle() == []  # in use, however long ago it was loaded
    assert manager.unload_idle() == []  # a batch has just finished with it
    time.sleep(idle + 0.1)
    assert manager.unload_idle() == [AR] and manager.loaded() == []
    assert ModelManager(settings).unload_idle() == []  # unset: never unloaded for idleness
