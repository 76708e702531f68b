"""Dynamic batching across concurrent model calls: many requests, one engine, shared batches.

The HTTP server runs each request's translation or summary in its own thread. Alone, each request would send its
few cache misses to the engine as a small batch of its own and the requests would queue on the engine one after
another. Here every in-flight request puts its pieces into one queue per (task, generation settings); whichever
caller finds that engine idle leads: it borrows the engine for one batch (`lease`), takes a batch from the queue,
runs it, and hands each output back to the request it came from, then the next idle caller leads. Translation and
summarization use the same batcher (the model manager owns it), so summaries obey the same budgets and fairness.
There is no background thread to start or stop, and a lone caller (the bulk CLI) leads every batch itself over its
own pieces, shortest first, as it always did. An engine with several replicas (CTranslate2 `inter_threads`) takes
as many leaders at once, one batch each: with one, the replicas idled while the leader tokenized, detokenized and
delivered, and each batch waited for its slowest part.

Forming a batch:
- budget: at most `max_batch` distinct texts and `max_tokens` padded tokens (texts x longest), and at most
  `max_decoding_tokens` decoder positions per engine replica (see `decoding_tokens`): the state a batch holds while
  it decodes grows with beam x output length, not with its source tokens, and it is what concurrent load adds to
  the server's memory;
- fairness: queued requests take turns, one piece each per turn, and a request that got a piece goes to the back,
  so a small request arriving while a huge one runs gets into the very next batch instead of waiting it out;
- length grouping: each request's pieces are queued shortest first, so successive batches grow in length and pad
  little; a text that several requests queued takes one slot when it comes up in the same batch;
- waiting: a batch that would not be full waits only for requests known to be on their way, those inside
  `arriving()` (the pipeline holds it while it cleans, detects, segments and looks up an article, the few
  milliseconds before its misses reach the queue), and at most until `max_wait` has passed since the oldest queued
  piece. A lone request therefore never waits, and sixteen requests that come in together make two or three full
  batches instead of a small one for the first and the rest after it: on a CPU a batch of 64 translates about 2.5x
  faster per sentence than a batch of 10;
- priority: pieces queued inside `background_priority()` (jobs) go into a batch only after every interactive piece
  that fits, so a long job fills the room interactive requests leave instead of taking turns with them.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from service.engines.base import Engine, Generation, GenerationSettings

#: Metrics hook: (task, texts in the batch, their source tokens).
BatchHook = Callable[[str, int, int], None]
#: Lends a task's engine for one block (`ModelManager.lease`).
Lease = Callable[[str], AbstractContextManager[Engine]]

#: True in work queued at background priority; a context variable, so the pipeline between needs no parameter.
_BACKGROUND: ContextVar[bool] = ContextVar("newsmt_background_priority", default=False)


@contextmanager
def background_priority() -> Iterator[None]:
    """Pieces this thread queues within the block wait behind interactive ones when a batch is formed."""
    token = _BACKGROUND.set(True)
    try:
        yield
    finally:
        _BACKGROUND.reset(token)


def decoding_tokens(segments: int, longest: int, gen: GenerationSettings, replicas: int) -> int:
    """Decoder positions one replica's share of a batch holds at most: its segments (the batch is split evenly among
    the replicas), each decoded as `beam` hypotheses, each keeping attention state for its source and for every
    output token up to the cap. The cap, not a guess of the output length: a batch's memory has to be bounded for
    the outputs that do run to it."""
    return math.ceil(segments / replicas) * gen.beam_size * (longest + gen.max_output_tokens)


@dataclass(eq=False)
class _Request:
    """One caller's pieces; `order` is the queue (indices, shortest first) and `next` the first not yet taken."""

    texts: list[str]
    tokens: list[int]
    queued_at: float
    order: list[int] = field(default_factory=list)
    next: int = 0
    outputs: list[Any] = field(default_factory=list)  # the engine's outputs, opaque here
    remaining: int = 0
    error: BaseException | None = None
    background: bool = False

    @property
    def finished(self) -> bool:
        return self.error is not None or self.remaining == 0


@dataclass(eq=False)
class _Group:
    """Requests waiting for one task's engine with one set of generation settings."""

    task: str
    requests: deque[_Request] = field(default_factory=deque)  # those with pieces not yet taken, in turn order
    leaders: int = 0  # callers forming or running a batch for it: at most one per engine replica
    replicas: int = 1  # parts the engine splits a batch into (its `replicas`, read when a request queues)


class DynamicBatcher:
    def __init__(self, lease: Lease, max_batch: int, max_tokens: int, max_wait_seconds: float,
                 on_batch: BatchHook | None = None, max_decoding_tokens: int | None = None):
        self._lease = lease
        self.max_batch = max_batch
        self.max_tokens = max_tokens
        self.max_decoding_tokens = max_decoding_tokens
        self.max_wait = max_wait_seconds
        self._on_batch = on_batch
        self._groups: dict[tuple[str, GenerationSettings], _Group] = {}
        self._cond = threading.Condition()
        self._arriving = 0  # callers inside `arriving()` that have not queued their pieces yet
        self._announced = threading.local()  # whether this thread's `arriving()` still counts in `_arriving`

    @contextmanager
    def arriving(self) -> Iterator[None]:
        """Announce that this thread will call `generate` within the block: until it does (or the block ends without
        it), an idle engine waits for its pieces (up to `max_wait`) rather than starting a small batch without them.
        The announcement ends as the pieces are queued, under the same lock, so no leader can slip in between."""
        with self._cond:
            self._arriving += 1
        self._announced.value = True
        try:
            yield
        finally:
            with self._cond:
                self._end_announcement()
                self._cond.notify_all()

    def _end_announcement(self) -> None:
        """With the lock held: this thread's pieces are queued, or will not come, so nobody waits for them now."""
        if getattr(self._announced, "value", False):
            self._announced.value = False
            self._arriving -= 1

    def generate(self, task: str, texts: list[str], gen: GenerationSettings) -> list[Generation]:
        """The task's engine's `generate(texts, gen)`, in batches shared with whatever else runs concurrently."""
        if not texts:
            return []
        with self._lease(task) as engine:
            tokens = engine.count_tokens(texts)
            replicas = engine.replicas
        request = _Request(texts, tokens, time.monotonic(), order=sorted(range(len(texts)), key=tokens.__getitem__),
                           outputs=[None] * len(texts), remaining=len(texts), background=_BACKGROUND.get())
        key = (task, gen)
        with self._cond:
            group = self._groups.setdefault(key, _Group(task))
            group.replicas = replicas
            group.requests.append(request)
            self._end_announcement()
            self._cond.notify_all()
        while True:
            with self._cond:
                # Lead only where a replica is free and pieces are queued (this request's may all be in batches).
                while (group.leaders >= group.replicas or not group.requests) and not request.finished:
                    self._cond.wait()
                if request.finished:
                    break
                group.leaders += 1
                self._wait_for_company(group)
                batch = self._take(group, gen)
                if not batch:  # another leader took every queued piece while this one waited for company
                    group.leaders -= 1
                    continue
            self._run(key, group, gen, batch)
        if request.error is not None:
            raise request.error
        return request.outputs

    def _wait_for_company(self, group: _Group) -> None:
        """Called by the leader with the lock held; `wait` releases it so other requests can queue meanwhile."""
        deadline = min(r.queued_at for r in group.requests) + self.max_wait
        while (self._arriving and (remaining := deadline - time.monotonic()) > 0
               and not self._fills_a_batch(group)):
            self._cond.wait(remaining)

    def _fills_a_batch(self, group: _Group) -> bool:
        queued = [r.tokens[i] for r in group.requests for i in r.order[r.next:]]
        return len(queued) >= self.max_batch or sum(queued) >= self.max_tokens

    def _over_budget(self, segments: int, longest: int, gen: GenerationSettings, replicas: int) -> bool:
        return segments * longest > self.max_tokens or (
            self.max_decoding_tokens is not None
            and decoding_tokens(segments, longest, gen, replicas) > self.max_decoding_tokens)

    def _take(self, group: _Group, gen: GenerationSettings) -> dict[str, list[tuple[_Request, int]]]:
        """Round-robin over the queued requests until the batch is full: text -> the (request, index) it answers.
        Interactive requests take their turns first; background ones share whatever room is left. A piece that alone
        is over a budget still runs, in a batch of its own."""
        slots: dict[str, list[tuple[_Request, int]]] = {}
        queues = [deque(r for r in group.requests if r.background == background) for background in (False, True)]
        longest = 0
        for queue in queues:
            longest = self._fill(queue, slots, longest, gen, group.replicas)
        group.requests = queues[0] + queues[1]
        return slots

    def _fill(self, queue: deque[_Request], slots: dict[str, list[tuple[_Request, int]]], longest: int,
              gen: GenerationSettings, replicas: int) -> int:
        """Add pieces from `queue`, one per request per turn, while they fit; returns the longest piece's tokens."""
        skipped: list[_Request] = []  # next piece does not fit this batch: first in line for the next one
        while queue and len(slots) < self.max_batch:
            request = queue.popleft()
            index = request.order[request.next]
            text, tokens = request.texts[index], request.tokens[index]
            if text not in slots:
                if slots and self._over_budget(len(slots) + 1, max(longest, tokens), gen, replicas):
                    skipped.append(request)
                    continue
                slots[text] = []
                longest = max(longest, tokens)
            slots[text].append((request, index))
            request.next += 1
            if request.next < len(request.order):
                queue.append(request)
        queue.extendleft(reversed(skipped))
        return longest

    def _run(self, key: tuple[str, GenerationSettings], group: _Group, gen: GenerationSettings,
             batch: dict[str, list[tuple[_Request, int]]]) -> None:
        """Run one batch outside the lock on a leased engine, then deliver its outputs (or its error, a failed
        reload included) and hand the engine over. Delivery always happens, whatever the engine raises, so no
        waiting request is ever left hanging."""
        tokens = {text: waiters[0][0].tokens[waiters[0][1]] for text, waiters in batch.items()}
        texts = sorted(batch, key=tokens.__getitem__)
        try:
            with self._lease(group.task) as engine:
                outputs = engine.generate(texts, gen)
            if len(outputs) != len(texts):
                raise RuntimeError(f"{group.task}: the engine returned {len(outputs)} outputs for {len(texts)} inputs")
        except BaseException as exc:  # every request in the batch gets it, raised in its own thread
            self._deliver(key, group, [(waiters, None) for waiters in batch.values()], exc)
            if not isinstance(exc, Exception):
                raise  # KeyboardInterrupt, SystemExit: the leader stops too
            return
        self._deliver(key, group, [(batch[text], output) for text, output in zip(texts, outputs, strict=True)], None)
        if self._on_batch is not None:
            self._on_batch(group.task, len(texts), sum(tokens.values()))

    def _deliver(self, key: tuple[str, GenerationSettings], group: _Group,
                 answers: list[tuple[list[tuple[_Request, int]], Generation | None]],
                 error: BaseException | None) -> None:
        with self._cond:
            for waiters, output in answers:
                for request, index in waiters:
                    if output is None:
                        request.error = error
                    else:
                        request.outputs[index] = output
                        request.remaining -= 1
            group.requests = deque(r for r in group.requests if not r.finished)
            group.leaders -= 1
            if not group.requests and not group.leaders and self._groups.get(key) is group:
                self._groups.pop(key)  # all its requests are finished
            self._cond.notify_all()
