"""The training step: one optimisation step on a contrastive batch, three ways with the same
result. The trainer runs every step through :class:`ContrastiveStep` (whose ``plain`` mode is
also the multi-process step) and every validation batch through :meth:`ContrastiveStep.batch_loss`.

The paper trains with 256 windows per batch. The CLIP loss couples every sample of the batch
(each is scored against all the others), and so does batch norm (statistics over the batch), so
the batch cannot simply be cut into independent pieces. :class:`ContrastiveStep` offers:

``plain``
    One forward of the whole batch, the loss, one backward: the textbook step. Any model and
    loss; with several processes (a :class:`~torch.nn.parallel.DistributedDataParallel` model),
    each process computes its share of the loss of the global batch
    (:func:`~braindecode_speech.training.distributed.batch_share_loss`).

``fast``
    The batch is cut into micro-batches that go through the convolution blocks *layer by
    layer*: every micro-batch passes a layer before any goes on to the next one. Batch norm
    pools its statistics (and, through autograd, their gradient) over all micro-batches and
    dropout masks are drawn for the whole batch at once, so the loss, the gradients and the
    batch-norm running statistics are those of ``plain`` (a batch of at most one micro-batch
    takes the ``plain`` path). The layers without batch norm (the sensor merger and subject
    layers) run one micro-batch at a time. The predictions ``[B, F, T]`` are never computed
    when the final segment ends with a 1×1 convolution (the paper's conv-GELU-conv and any
    ``final_convs=False`` encoder): the scores are taken through that last layer, against
    the speech projected once through its transposed weight (:class:`_ScoresThroughLinear`;
    on the paper's step, 127 GFLOP and the ``[B, F, T]`` tensors less). Any other final
    segment runs on two micro-batches at a time, whose predictions are reduced to their
    ``[2b, B]`` CLIP scores straight away (:class:`_SlicedScores`). Working on micro-batches
    keeps every intermediate tensor small: in cache, and recycled by the memory allocator
    instead of being mapped afresh (and page-faulted) at every step; batch norm's elementwise
    passes go through each micro-batch a few samples at a time (:func:`_chunks`), so that
    their float32 intermediates stay in cache too.
    What backward keeps is trimmed without changing a bit of the result: the residual sums
    (inputs of the second and GLU convolutions of a block) are computed again in backward
    from tensors kept anyway (:class:`_Recompute`: a batch norm with the kept statistics and
    an addition), and the GLU convolution keeps its output and gate, not its ``2C`` channels
    (:class:`_GLU`). On the paper's batch-256 step this keeps 3.5 GB for backward instead of
    5.5 GB, for two elementwise passes per block.

``lean``
    Gradient caching with segment recomputation. The segments are: the layers before the
    convolutions, each convolution block, the final convolutions with the scores. Pass 1 runs
    the ``fast`` forward without any graph, keeping only each segment's input and the
    random-number state at its start, and ends with the ``[B, B]`` scores; the loss and its
    gradient with respect to the scores are computed once. Pass 2 walks the segments from last
    to first: it re-runs the segment with graph from its stored input and back-propagates the
    incoming gradient, which gives the gradient of the segment's input, passed to the segment
    before. The first and last segments (no batch norm) are re-run one micro-batch at a time;
    a convolution block is re-run layer by layer on all micro-batches, so that its pooled
    statistics, and hence the exact batch-norm gradient, are those of the whole batch. Only one
    block's graph is alive at a time.

    Matching the two passes: the re-run sees the same inputs and pools the same batch-norm
    statistics, so it computes the same values, but does not update the running statistics
    again (pass 1 did, once); the spatial dropout drawn in pass 1 is reused; the random-number
    generator is set back to its pass-1 state at the start of each re-run segment (and the
    global state is left as pass 1 left it), so dropout masks are identical.

What ``fast`` and ``lean`` need of the model (``plain`` takes any model with the call
``(brain [B, C, T], subject [B], positions [B, C, 2], mask [B, C]) → [B, F, T]``), one of:

- *samples processed independently*: no batch norm anywhere (no ``nn.BatchNorm*``; the step
  cannot see other layers that mix samples, so the model must have none). The whole model is
  then one segment, run one micro-batch at a time (``lean``: gradient caching with the
  micro-batch re-run from the same random state). Dropout masks are drawn one micro-batch at
  a time (the same distribution as ``plain``'s, not always the same draw).
- *the staged interface* of :class:`~braindecode_speech.models.BrainEncoder`, for models with
  batch norm: ``spatial_dropout(positions, mask) → dropped [B, C] | None`` (random draws that
  must cover the whole batch), ``embed_sensors(x, subjects, positions, mask, dropped) →
  [B, H, T]`` (per sample), ``blocks`` (a sequence of modules ``[B, H, T] → [B, H', T]`` made
  of ``nn.Sequential``, ``nn.BatchNorm1d``, ``nn.Dropout``,
  :class:`~braindecode_speech.models.DilatedConv` and modules without batch norm or dropout)
  and ``final`` (a module ``[B, H', T] → [B, F, T]``, per sample); the model's forward must be
  ``final(blocks(embed_sensors(...)))``, and batch norm may sit in ``blocks`` only. A model
  that offers this interface is cut by it, batch norm or not (spatial dropout is then drawn
  once for the whole batch, as in ``plain``).

Any other model is refused when the step is built, with a :class:`ConfigError` naming
``model.target`` and what is missing. ``fast`` and ``lean`` also need a
:class:`~braindecode_speech.training.losses.ClipLoss`.

Layout: ``fast`` and ``lean`` run the blocks and the final segment on time-major parts
(``[b, C, 1, T]`` in channels-last memory: one ``T × C`` matrix per sample, the layout of the
loader's batches), where oneDNN's convolutions need no reordering, and score the predictions
against the speech flattened in the same order (a view of the loader's batches). On the
paper's step (batch 256 as the loader lays it out, 2-core AMD EPYC) the step is 16-18 %
faster than on ``[b, C, T]`` parts, float32 and bf16 alike (README, Performance); the results
differ from ``plain``'s by float rounding only (tested). Layers the time-major path
does not know get the ``[b, C, T]`` view (see :func:`_apply_layer`).

All modes optionally run the encoder under bfloat16 autocast (``bf16=True``; scores and loss
stay in float32), much faster on CPUs with AMX or AVX512-BF16 but with results that differ from
float32 at the 1e-2 level.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from ..config import ConfigError
from ..models.conv import DilatedConv, GLUConv
from . import distributed
from .distributed import Negatives
from .losses import ClipLoss

__all__ = ["ContrastiveStep", "Mode", "STAGED_INTERFACE"]

Mode = Literal["plain", "fast", "lean"]
MODES: tuple[Mode, ...] = ("plain", "fast", "lean")
_RNGState = tuple[torch.device, Tensor, "Tensor | None"]

#: what a model with batch norm must offer to the ``fast`` and ``lean`` steps
STAGED_INTERFACE = ("spatial_dropout", "embed_sensors", "blocks", "final")


@dataclass(frozen=True)
class _Stages:
    """A model cut into the segments of the ``fast`` and ``lean`` steps."""

    spatial_dropout: Callable[[Tensor, Tensor], Tensor | None]
    embed: Callable[..., Tensor]
    """``(brain, subject, positions, mask, dropped)`` → ``[b, H, T]``, per sample"""
    blocks: Sequence[nn.Module]
    final: Callable[[Tensor], Tensor]
    """``[b, H', T]`` → ``[b, F, T]``, per sample"""
    linear_last: tuple[nn.Module, str, nn.Conv1d] | None = None
    """``(head, act, last)`` when ``final`` is ``last ∘ act ∘ head`` with ``last`` a 1×1
    convolution (:func:`_linear_last`): ``fast`` then scores through ``last``"""


class ContrastiveStep:
    """A training step: ``step(batch) -> float`` zeroes the gradients, computes the loss and
    its gradients in the chosen ``mode``, applies ``optimizer`` and returns the loss.

    Parameters
    ----------
    model : the encoder, ``(brain [B, C, T], subject [B], positions [B, C, 2], mask [B, C])``
        → ``[B, F, T]``, or its :class:`~torch.nn.parallel.DistributedDataParallel` wrapper
        (``plain`` only); ``fast`` and ``lean`` need one of the two kinds of models of the
        module documentation.
    loss : ``(prediction [B, F, T], speech [B, F, T])`` → scalar; a
        :class:`~braindecode_speech.training.losses.ClipLoss` for ``fast`` and ``lean``.
    optimizer : over the parameters of ``model`` and ``loss``.
    mode : ``"plain"``, ``"fast"`` or ``"lean"`` (see the module documentation).
    micro_batch : micro-batch size of ``fast`` and ``lean``.
    bf16 : run the encoder under bfloat16 autocast.
    negatives : with several processes, the contrastive candidates of each window (see
        :func:`~braindecode_speech.training.distributed.batch_share_loss`).
    compile : run the training forward (and so its backward) through ``torch.compile``
        (``plain`` only: the other modes run the model layer by layer); the first steps
        compile, and a batch of a new size compiles again.

    The batch is a mapping with tensors ``brain``, ``subject``, ``positions``, ``mask`` and
    ``speech`` (other keys are ignored); they are moved to the model's device.
    """

    def __init__(
        self,
        model: nn.Module,
        loss: nn.Module,
        optimizer: torch.optim.Optimizer,
        mode: Mode = "plain",
        micro_batch: int = 32,
        bf16: bool = False,
        negatives: Negatives = "global",
        compile: bool = False,
    ):
        if mode not in MODES:
            raise ValueError(f"Unknown mode {mode!r}; expected one of {MODES}")
        if compile and mode != "plain":
            raise ValueError(f"compile needs mode 'plain' (mode {mode!r} runs the model layer "
                             "by layer)")
        if micro_batch < 1:
            raise ValueError(f"micro_batch must be >= 1, got {micro_batch}")
        self.parallel_model = model
        self.model = model.module if isinstance(model, DistributedDataParallel) else model
        self.stages: _Stages | None = None
        if mode != "plain":
            if model is not self.model:
                raise ValueError(f"mode {mode!r} is single-process only; use mode 'plain' "
                                 "with a DistributedDataParallel model")
            if not isinstance(loss, ClipLoss):
                raise TypeError(f"mode {mode!r} needs a ClipLoss, got {type(loss).__name__}")
            self.stages = _stages(self.model, mode)
        self.loss = loss
        self.optimizer = optimizer
        self.mode = mode
        self.micro_batch = micro_batch
        self.bf16 = bf16
        self.negatives = negatives
        #: the model the training forward goes through (compiled or not)
        self.train_model: nn.Module = (torch.compile(self.parallel_model) if compile
                                       else self.parallel_model)

    def __call__(self, batch: Mapping[str, Tensor], global_batch: int | None = None) -> float:
        """One step on ``batch``: this process's windows of a global batch of ``global_batch``
        windows (default: ``batch`` is the whole batch)."""
        inputs = self._to_device(batch)
        self.optimizer.zero_grad(set_to_none=True)
        mode = self.mode
        if mode == "fast" and len(inputs["brain"]) <= self.micro_batch:
            mode = "plain"  # one micro-batch: the same computation, without the bookkeeping
        if mode == "plain":
            loss = self._plain(inputs, global_batch or len(inputs["brain"]))
        else:
            loss = {"fast": self._fast, "lean": self._lean}[mode](inputs)
        self.optimizer.step()
        return loss

    def batch_loss(self, batch: Mapping[str, Tensor], global_batch: int | None = None) -> Tensor:
        """Forward and loss of ``batch`` (this process's share of the loss of a global batch
        of ``global_batch`` windows; the loss of ``batch`` in single-process runs), through
        the data-parallel wrapper (compiled with ``compile``) in training mode and through
        the model itself otherwise (validation)."""
        inputs = self._to_device(batch)
        model = self.train_model if self.model.training else self.model
        with self._autocast():
            out = model(inputs["brain"], inputs["subject"], inputs["positions"], inputs["mask"])
        # the loader's speech is a view of time-major memory: made contiguous once here
        return distributed.batch_share_loss(self.loss, out.float(), inputs["speech"].contiguous(),
                                            global_batch or len(out), self.negatives)

    # ------------------------------------------------------------------------------- modes
    def _plain(self, batch: dict[str, Tensor], global_batch: int) -> float:
        loss = self.batch_loss(batch, global_batch)
        loss.backward()
        _average_loss_gradients(self.loss)
        return float(loss.detach())

    def _fast(self, batch: dict[str, Tensor]) -> float:
        stages = self.stages
        dropped = stages.spatial_dropout(batch["positions"], batch["mask"])
        recompute = _Recompute()
        with recompute.hooks():
            with self._autocast():
                parts = self._embed(batch, dropped)
                for block in stages.blocks:
                    parts = _layer_sync(block, parts, update_stats=True, recompute=recompute)
            scores = self._fast_scores(parts, batch["speech"], recompute)
        loss = self.loss.from_scores(scores)
        loss.backward()
        return float(loss.detach())

    def _lean(self, batch: dict[str, Tensor]) -> float:
        stages = self.stages
        blocks = list(stages.blocks)
        dropped = stages.spatial_dropout(batch["positions"], batch["mask"])
        # pass 1, without graph: the input of each block and of the final convolutions (and
        # the random-number state when each segment starts), then the scores
        device = batch["brain"].device
        embed_rng = _rng_state(device)
        inputs: list[list[Tensor]] = []
        rng_states: list[_RNGState] = []
        with torch.no_grad():
            with self._autocast():
                parts = self._embed(batch, dropped)
                for block in blocks:
                    inputs.append(_consolidate(parts))
                    rng_states.append(_rng_state(device))
                    parts = _layer_sync(block, inputs[-1], update_stats=True)
            inputs.append(_consolidate(parts))
            rng_states.append(_rng_state(device))
            del parts
            speech, norms = _flat_time_major_speech(batch["speech"])
            scores = torch.cat([self._scores(part, speech, norms) for part in inputs[-1]])
        # the loss and its gradient w.r.t. the scores (and the loss's own parameters)
        scores.requires_grad_()
        loss = self.loss.from_scores(scores)
        loss.backward()
        # pass 2: re-run the segments from last to first with graph and back-propagate
        grads = []
        with _replayed_rng(rng_states.pop()):
            for part, score_grad in zip(inputs.pop(), scores.grad.split(self.micro_batch)):
                part = part.detach().requires_grad_()
                self._scores(part, speech, norms).backward(score_grad)
                grads.append(part.grad)
        for block in reversed(blocks):
            parts = [part.detach().requires_grad_() for part in inputs.pop()]
            with _replayed_rng(rng_states.pop()), self._autocast():
                outputs = _layer_sync(block, parts, update_stats=False)
            torch.autograd.backward(outputs, _cast_like(grads, outputs))
            del outputs
            grads = [part.grad for part in parts]
        with _replayed_rng(embed_rng), self._autocast():
            for part, grad in zip(self._micro_batches(batch, dropped), grads):
                output = _time_major(stages.embed(*part))
                output.backward(grad.to(output.dtype))
        return float(loss.detach())

    # ----------------------------------------------------------------------------- helpers
    def _to_device(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        device = next(self.model.parameters()).device
        return {key: batch[key].to(device, non_blocking=True)
                for key in ("brain", "subject", "positions", "mask", "speech")}

    def _autocast(self) -> contextlib.AbstractContextManager:
        device = next(self.model.parameters()).device
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def _micro_batches(
        self, batch: dict[str, Tensor], dropped: Tensor | None
    ) -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]]:
        """``(brain, subject, positions, mask, dropped)`` of each micro-batch."""
        keys = ("brain", "subject", "positions", "mask")
        pieces = [batch[key].split(self.micro_batch) for key in keys]
        dropped_pieces = (
            dropped.split(self.micro_batch) if dropped is not None else [None] * len(pieces[0])
        )
        yield from zip(*pieces, dropped_pieces)

    def _embed(self, batch: dict[str, Tensor], dropped: Tensor | None) -> list[Tensor]:
        """The first segment (the part of the encoder before the blocks), one micro-batch at a
        time, as time-major ``[b, H, 1, T]`` parts (see :func:`_time_major`)."""
        return [_time_major(self.stages.embed(*part))
                for part in self._micro_batches(batch, dropped)]

    def _scores(self, part: Tensor, speech: Tensor, speech_norms: Tensor,
                recompute: _Recompute | None = None) -> Tensor:
        """CLIP scores ``[b, B]`` of one time-major micro-batch ``[b, H', 1, T]``: its
        predictions (the final segment) scored in float32 against every speech segment of the
        batch, ``speech [B, T·F]`` flattened time-major (:func:`_flat_time_major_speech`)."""
        with self._autocast():
            (prediction,) = _layer_sync(self.stages.final, [part], update_stats=False,
                                        recompute=recompute)
        flat = _flat_parts(prediction)  # [b, T·F]: a view of time-major
        return _SlicedScores.apply(flat, speech, speech_norms)


    def _fast_scores(self, parts: list[Tensor], speech: Tensor, recompute: _Recompute) -> Tensor:
        """The ``fast`` step's CLIP scores ``[B, B]`` of the blocks' outputs ``parts``
        (time-major micro-batches) against ``speech [B, F, T]``.

        When the final segment ends with a 1×1 convolution ``last`` (weight ``W [F, H]``,
        bias ``β``), the scores are taken through it: ``<W·h_i + β, Y_j> = <h_i, Wᵀ·Y_j> +
        <β, Σ_t Y_j>``, with the speech projected once for the batch (``[B, H, T]``) instead
        of every prediction computed (``[B, F, T]``). The product with ``W`` then runs once
        forward (on the speech) and once backward (its weight gradient) instead of three
        times, and the score products are over ``H`` channels instead of ``F`` (on the
        paper's batch-256 step: 640 instead of 1024; 127 GFLOP less in all). Otherwise the final
        segment runs on two micro-batches at a time (:data:`_SCORED_TOGETHER`), whose
        predictions are scored straight away.
        """
        if self.stages.linear_last is None:
            flat, norms = _flat_time_major_speech(speech)
            return torch.cat([
                self._scores(recompute.cat(parts[i:i + _SCORED_TOGETHER]), flat, norms,
                             recompute)
                for i in range(0, len(parts), _SCORED_TOGETHER)])
        head, act, last = self.stages.linear_last
        with self._autocast():
            heads = _layer_sync(head, parts, update_stats=False, recompute=recompute)
        by_time = speech.transpose(1, 2)  # [B, T, F]: a view of the loader's time-major batch
        _, norms = _flat_time_major_speech(speech)
        dtype = torch.bfloat16 if self.bf16 else speech.dtype  # that of the layer's product
        scores = _ScoresThroughLinear.apply(by_time, last.weight, norms, dtype, act, *heads)
        if last.bias is None:
            return scores
        return scores + by_time.sum(1) @ last.bias.to(speech.dtype) / norms


#: micro-batches that ``fast`` runs through the final segment and scores together when it
#: cannot score through its last layer: each score product reads the speech of the whole batch
#: (377 MB on the paper's batch-256 step), so scoring two micro-batches at a time halves what
#: the products read and pack
_SCORED_TOGETHER = 2


class _SlicedScores(torch.autograd.Function):
    """:func:`~braindecode_speech.training.losses.clip_scores` of ``prediction.float()``: the
    float32 scores ``[b, N]`` of predictions ``[b, D]`` (float32 or bf16) against ``speech
    [N, D]`` (float32, no gradient) with norms ``[N]``, computed over slices of ``D``.

    No float32 copy of the predictions is made (each slice is converted as the product reads
    it) and the gradient is written slice by slice in the predictions' dtype: nothing of the
    size of the predictions is allocated in float32 (94 MB per pair of paper-sized
    micro-batches, which the memory allocator would map afresh and page-fault at every step),
    and the slices being converted stay in cache. The same products as ``clip_scores``; the
    forward's sum runs slice by slice (float rounding only).
    """

    @staticmethod
    def forward(ctx, prediction: Tensor, speech: Tensor, norms: Tensor) -> Tensor:
        ctx.save_for_backward(speech, norms)
        ctx.dtype = prediction.dtype
        inner = speech.new_zeros(len(prediction), len(speech))
        for pred, cand in zip(prediction.split(_SLICE, 1), speech.split(_SLICE, 1)):
            inner.addmm_(pred.to(speech.dtype), cand.T)
        return inner / norms

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        speech, norms = ctx.saved_tensors
        grad = grad / norms
        out = grad.new_empty(len(grad), speech.shape[1], dtype=ctx.dtype)
        for piece, cand in zip(out.split(_SLICE, 1), speech.split(_SLICE, 1)):
            piece.copy_(grad @ cand)
        return out, None, None


#: width of the score slices of :class:`_SlicedScores` (4 MB of float32 for 64 predictions)
#: and, rounded down to whole time steps, of :class:`_ScoresThroughLinear`
_SLICE = 16384


class _ScoresThroughLinear(torch.autograd.Function):
    """The float32 scores ``[B, N]`` ``<act(h_i), Wᵀ·Y_j> / ||Y_j||`` of time-major parts
    ``h`` (``[b, H, 1, T]`` each, float32 or bf16; ``B`` samples in all) against the speech
    ``Y`` given by time (``[N, T, F]``, float32, no gradient) projected through the weight
    ``W [F, H, 1]`` of a 1×1 convolution, with the speech's norms ``[N]``: the scores of
    :meth:`ContrastiveStep._fast_scores` without the bias. ``dtype``: that of the
    projection's products (bf16 under autocast); ``act``: an activation applied to the
    parts first (see :class:`_PooledBatchNorm`).

    The projected speech ``P = Wᵀ·Y`` (``[N, T·H]`` time-major, ``dtype``) is computed once.
    The score products run over slices of whole time steps (about :data:`_SLICE` columns of
    ``T·H``): the slices of all parts are gathered into one float32 block (each product has
    all ``B`` rows) and activated there, so the activated parts are never held whole (the
    activation runs in float32: no bf16 rounding of its output). Backward goes over the same
    slices once: the parts' gradients (written in ``P``'s memory when dtypes and shapes
    agree, as each slice of ``P`` is read for the last time) and the weight's gradient, a
    slice's share at a time from the activated parts and the speech (the gradient of ``P`` is
    never held whole). Besides the parts (which the activation's backward needs anyway) and
    the speech, only ``P`` is kept; a second backward (``retain_graph``) projects again.
    """

    @staticmethod
    def forward(ctx, speech: Tensor, weight: Tensor, norms: Tensor, dtype: torch.dtype,
                act: str, *parts: Tensor) -> Tensor:
        projected = _projected(speech, weight, dtype)
        inner = norms.new_zeros(sum(map(len, parts)), len(speech))
        for columns in _time_slices(parts[0]):
            inner.addmm_(_activate(_gathered(parts, columns, norms.dtype), act),
                         projected[:, columns].to(norms.dtype).T)
        # an attribute, not a saved tensor: backward overwrites it (and a second backward,
        # with retain_graph, computes it again)
        ctx.dtype, ctx.act, ctx.norms, ctx.projected = dtype, act, norms, projected
        ctx.save_for_backward(speech, weight, *parts)
        return inner / norms

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        speech, weight, *parts = ctx.saved_tensors
        act, channels = ctx.act, weight.shape[1]
        projected, ctx.projected = ctx.projected, None  # overwritten below: not kept
        if projected is None:  # a second backward
            projected = _projected(speech, weight, ctx.dtype)
        grad = grad / ctx.norms
        # the parts' gradients, flattened time-major ([B, T·H]), in P's memory if they have
        # its dtype and shape (in-batch scores: B = N), each slice of P written as it is read
        # for the last time; and the weight's, Σ over slices of Y[slice]ᵀ · ∂P[slice]
        dtype, rows = parts[0].dtype, sum(map(len, parts))
        reuse = (all(part.dtype == dtype for part in parts) and projected.dtype == dtype
                 and rows == len(projected))
        flat_grads = projected if reuse else projected.new_empty(rows, projected.shape[1],
                                                                 dtype=dtype)
        grad_weight = torch.zeros_like(weight[:, :, 0],
                                       dtype=torch.promote_types(weight.dtype, torch.float32))
        for columns in _time_slices(parts[0]):
            piece = grad @ projected[:, columns].to(grad.dtype)
            hidden = _gathered(parts, columns, grad.dtype)
            if act != "none":
                _activation_backward(piece, hidden, act, out=piece)
                _activate(hidden, act)
            flat_grads[:, columns] = piece
            grad_projected = (grad.T @ hidden).view(-1, channels)
            time_steps = slice(columns.start // channels, columns.stop // channels)
            by_time = speech[:, time_steps].reshape(-1, speech.shape[2])
            grad_weight += by_time.to(ctx.dtype).T @ grad_projected.to(ctx.dtype)
        del projected
        grad_parts = [flat.view(len(part), 1, part.shape[3], channels).permute(0, 3, 1, 2)
                      for flat, part in zip(flat_grads.split([len(p) for p in parts]), parts)]
        return None, grad_weight.to(weight.dtype).unsqueeze(2), None, None, None, *grad_parts


def _projected(speech: Tensor, weight: Tensor, dtype: torch.dtype) -> Tensor:
    """``speech [N, T, F]`` through the transposed 1×1 convolution weight ``[F, H, 1]``:
    ``[N, T·H]`` in ``dtype`` (time-major, like :func:`_flat_parts`)."""
    n, _, features = speech.shape
    flat = speech.reshape(-1, features).to(dtype)
    return torch.mm(flat, weight[:, :, 0].to(dtype)).view(n, -1)


def _flat_parts(part: Tensor) -> Tensor:
    """A time-major part ``[b, H, 1, T]`` → ``[b, T·H]`` (a view of channels-last memory)."""
    return part.permute(0, 2, 3, 1).reshape(len(part), -1)


def _time_slices(part: Tensor) -> Iterator[slice]:
    """Consecutive slices of whole time steps of the flattened ``[b, T·H]`` parts (of
    :func:`_flat_parts`) like ``part [b, H, 1, T]``: about :data:`_SLICE` columns each, at
    least one time step."""
    channels, steps = part.shape[1], part.shape[-1]
    step = channels * max(1, _SLICE // channels)
    width = channels * steps
    return (slice(start, min(start + step, width)) for start in range(0, width, step))


def _gathered(parts: Sequence[Tensor], columns: slice, dtype: torch.dtype) -> Tensor:
    """``columns`` of the flattened parts (:func:`_flat_parts`), stacked: ``[B, w]`` in
    ``dtype``."""
    pieces = [_flat_parts(part)[:, columns] for part in parts]
    out = pieces[0].new_empty(sum(map(len, pieces)), pieces[0].shape[1], dtype=dtype)
    return torch.cat(pieces, out=out)  # converted as it is copied


def _average_loss_gradients(loss: nn.Module) -> None:
    """Average the gradients of the loss's own parameters (a learned temperature) over the
    processes; those of the model are averaged by DistributedDataParallel."""
    world_size = distributed.process_info().world_size
    if world_size == 1:
        return
    for param in loss.parameters():
        if param.grad is not None:
            torch.distributed.all_reduce(param.grad)
            param.grad /= world_size


def _stages(model: nn.Module, mode: Mode) -> _Stages:
    """``model`` cut into the segments of the ``fast`` and ``lean`` steps (see the module
    documentation): by its staged interface when it has a usable one (the exact cut), else as
    one per-sample segment when it has no batch norm; :class:`ConfigError` saying what is
    missing otherwise."""
    batch_norms = [n for n, m in model.named_modules()
                   if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    missing = [attr for attr in STAGED_INTERFACE if not hasattr(model, attr)]
    problem = None
    if missing:
        problem = (f"lacks {', '.join(missing)} of the staged interface "
                   f"({', '.join(STAGED_INTERFACE)}; see braindecode_speech.training.steps)")
    else:
        blocks = list(model.blocks)
        staged = {id(m) for block in [*blocks, model.final] for m in block.modules()}
        outside = [n for n in batch_norms if id(model.get_submodule(n)) not in staged]
        unsyncable = [found for block in blocks if (found := _unsyncable(block)) is not None]
        if outside:
            problem = f"holds {', '.join(outside)} outside its blocks"
        elif unsyncable:
            problem = (f"holds a {unsyncable[0]} in its blocks that the step cannot run layer "
                       "by layer (blocks are made of nn.Sequential, nn.BatchNorm1d, nn.Dropout, "
                       "DilatedConv and modules without batch norm or dropout)")
        else:
            return _Stages(model.spatial_dropout, model.embed_sensors, blocks, model.final,
                           _linear_last(model.final))
    if not batch_norms:  # samples independent: the whole model is one segment
        return _Stages(spatial_dropout=lambda positions, mask: None,
                       embed=lambda x, subjects, positions, mask, dropped:
                       model(x, subjects, positions, mask),
                       blocks=(), final=nn.Identity())
    listed = ", ".join(batch_norms[:3]) + (", ..." if len(batch_norms) > 3 else "")
    raise ConfigError(
        f"optim.step={mode!r} cannot train {type(model).__name__} (model.target): it has batch "
        f"norm ({listed}), whose statistics pool the whole batch, and {problem}. Use "
        "optim.step=plain, or give the model the staged interface")


def _linear_last(final: Callable[[Tensor], Tensor]
                 ) -> tuple[nn.Module, str, nn.Conv1d] | None:
    """``(head, act, last)`` with ``final = last ∘ act ∘ head`` when ``final`` is a 1×1
    ``nn.Conv1d`` without groups or stride, or an ``nn.Sequential`` ending with one; ``act``
    names the layer before it when that is one of :data:`_ACTIVATIONS` (else ``"none"``, see
    :class:`_PooledBatchNorm`), and ``head`` holds the layers before (an empty
    ``nn.Sequential`` for none). None for any other ``final``."""
    layers = list(final) if isinstance(final, nn.Sequential) else [final]
    last = layers.pop() if layers else None
    if not (isinstance(last, nn.Conv1d) and last.kernel_size == (1,) and last.stride == (1,)
            and last.groups == 1 and last.padding in ((0,), "valid")):
        return None
    act = "none"
    if layers and isinstance(layers[-1], _ACTIVATIONS):
        act = _activation_name(layers.pop())
    return nn.Sequential(*layers), act, last


def _consolidate(parts: list[Tensor]) -> list[Tensor]:
    """The same micro-batches as views of one whole-batch tensor.

    Kept for the whole step, they then occupy one large block (which the allocator maps on its
    own) instead of many small blocks pinning the heap between short-lived tensors.
    """
    return list(torch.cat(parts).split([len(part) for part in parts]))


def _cast_like(grads: Sequence[Tensor], outputs: Sequence[Tensor]) -> list[Tensor]:
    return [grad.to(output.dtype) for grad, output in zip(grads, outputs)]


def _needs_whole_batch(module: nn.Module) -> bool:
    """Whether ``module`` holds layers that must see the whole batch (training-mode batch norm,
    whose statistics pool the samples, or dropout, whose mask is drawn for the whole batch)."""
    return any(
        isinstance(m, nn.modules.batchnorm._BatchNorm | nn.Dropout) and m.training
        for m in module.modules()
    )


def _unsyncable(module: nn.Module) -> str | None:
    """The type name of the first layer of ``module`` that :func:`_layer_sync` cannot run in
    training mode (a layer holding batch norm or dropout that it does not know), or None."""
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm | nn.Dropout)
               for m in module.modules()):
        return None
    if isinstance(module, nn.BatchNorm1d | nn.Dropout):
        return None
    if isinstance(module, DilatedConv):
        return _unsyncable(module.layers)
    if isinstance(module, nn.Sequential):
        return next((found for child in module if (found := _unsyncable(child))), None)
    return type(module).__name__


def _time_major(x: Tensor) -> Tensor:
    """``x [b, C, T]`` → the same values as ``[b, C, 1, T]`` in time-major (channels-last)
    memory, the layout in which oneDNN runs these convolutions fastest (one ``T × C`` matrix
    per sample, as the loader delivers windows). The ``fast`` and ``lean`` steps run the
    blocks and the final segment on it (a view when ``x`` is already time-major)."""
    return x.unsqueeze(2).contiguous(memory_format=torch.channels_last)


def _flat_time_major_speech(speech: Tensor) -> tuple[Tensor, Tensor]:
    """``speech [B, F, T]`` → ``([B, T·F], norms [B])``: flattened in the order of the
    time-major predictions (a view of the loader's time-major batches, a copy otherwise)."""
    flat = speech.transpose(1, 2).flatten(1)
    return flat, flat.norm(dim=1)


def _per_channel(values: Tensor, like: Tensor) -> Tensor:
    """``values [C]`` shaped to broadcast over ``like [b, C, ...]``."""
    return values.view(-1, *[1] * (like.dim() - 2))


def _same_layout(x: Tensor, like: Tensor) -> Tensor:
    """``x`` in the memory layout of ``like`` (channels-last for 4-D time-major parts)."""
    layout = torch.channels_last if like.dim() == 4 else torch.contiguous_format
    return x.contiguous(memory_format=layout)


#: per-sample layers :func:`_apply_layer` runs elementwise on time-major parts as they are
_ELEMENTWISE = (nn.GELU, nn.ReLU, nn.Identity, nn.Dropout)


def _apply_layer(module: nn.Module, x: Tensor, recompute: _Recompute | None = None) -> Tensor:
    """A per-sample layer (no whole-batch layer in training mode) applied to a time-major part
    ``x [b, C, 1, T]`` (:func:`_time_major`); the result is time-major too.

    Equals ``module(x.squeeze(2))`` up to float rounding: ``nn.Conv1d`` with zero padding and
    ``nn.GLU(dim=1)`` run in the time-major layout, elementwise layers as they are; any other
    module gets the ``[b, C, T]`` view and its output is laid out time-major again.
    """
    if isinstance(module, _ELEMENTWISE):
        out = module(x)
        if recompute is not None and isinstance(module, nn.GELU):  # GELU keeps its input
            recompute.register(out, module, x)
        return out
    if _zero_padded(module):
        return _conv(module, x, module.weight, module.bias)
    if isinstance(module, nn.GLU) and module.dim == 1:  # halves copied out, then in place
        first, second = (half.clone(memory_format=torch.channels_last) for half in x.chunk(2, 1))
        return _GLU.apply(first, second)[0]
    return _time_major(module(x.squeeze(2)))


def _zero_padded(module: nn.Module) -> bool:
    """Whether ``module`` is an ``nn.Conv1d`` with explicit zero padding (which
    :func:`_conv` runs on time-major parts)."""
    return (isinstance(module, nn.Conv1d) and module.padding_mode == "zeros"
            and not isinstance(module.padding, str))


def _conv(conv: nn.Conv1d, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``conv``'s convolution with ``weight [C_out, C_in, K]`` (its own or a slice) and
    ``bias``, of a time-major part ``x [b, C_in, 1, T]``, as a 2-D convolution (time-major
    output)."""
    return nn.functional.conv2d(x, weight.unsqueeze(2), bias, (1, conv.stride[0]),
                                (0, conv.padding[0]), (1, conv.dilation[0]), conv.groups)


def _glu_conv(conv: nn.Conv1d, x: Tensor) -> Tensor:
    """``GLU(conv(x), dim=1)`` of a time-major part: the two halves of the ``2C`` output
    channels as two convolutions, and the GLU in their memory (:class:`_GLU`). No tensor of
    ``2C`` channels is made, and nothing is allocated for the GLU: freed blocks the size of the
    part are what the memory allocator reuses best (see :class:`_GLU`)."""
    biases = conv.bias.chunk(2) if conv.bias is not None else (None, None)
    first, second = (_conv(conv, x, weight, bias)
                     for weight, bias in zip(conv.weight.chunk(2), biases))
    out, _ = _GLU.apply(first, second)
    return out


class _GLU(torch.autograd.Function):
    """``first·σ(second)`` computed in place: ``second`` becomes the gate ``σ(second)`` and
    ``first`` the output, and both are what backward keeps (``∂/∂first = g·σ``,
    ``∂/∂second = g·out·(1 − σ)``). Returns ``(out, gate)``; only ``out`` is used.

    Working in place matters for memory on CPU: a short-lived tensor the size of a part, freed
    between kept ones, leaves a hole that the allocator may never reuse (see
    :func:`_roomy_like`).
    """

    @staticmethod
    def forward(ctx, first: Tensor, second: Tensor) -> tuple[Tensor, Tensor]:
        gate = second.sigmoid_()
        out = first.mul_(gate)
        ctx.mark_dirty(first, second)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(out, gate)
        return out, gate

    @staticmethod
    def backward(ctx, grad: Tensor | None, _: Tensor | None) -> tuple[Tensor | None, ...]:
        if grad is None:  # the output is not used
            return None, None
        out, gate = ctx.saved_tensors
        grad_second = grad * out
        return grad * gate, grad_second.addcmul_(grad_second, gate, value=-1)


def _layer_sync(module: nn.Module, parts: list[Tensor], update_stats: bool,
                recompute: _Recompute | None = None) -> list[Tensor]:
    """Apply ``module`` to a batch given as time-major micro-batches ``parts``
    (:func:`_time_major`), layer by layer.

    Equals ``module(torch.cat(parts)).split(...)`` up to float rounding: batch norm uses the
    statistics of all parts and dropout draws one mask for the whole batch; the other layers
    run part by part (:func:`_apply_layer`). ``update_stats``: update batch-norm running
    statistics (False when re-running a segment).
    """
    if isinstance(module, nn.BatchNorm1d) and module.training:
        return _pooled_batch_norm(module, parts, update_stats, recompute=recompute)
    if isinstance(module, nn.Dropout) and module.training and module.p > 0:
        return _whole_batch_dropout(module.p, parts)
    if isinstance(module, DilatedConv):
        out = _layer_sync(module.layers, parts, update_stats, recompute)
        if not module.residual:
            return out
        if recompute is None or not all(recompute.recomputable(o) for o in out):
            return [x + o for x, o in zip(parts, out)]
        # `out` is recomputable, so no layer keeps it: the sum is taken in place (no new
        # memory) and registered as recomputable from the input (kept by the convolution)
        sums = []
        for x, o in zip(parts, out):
            recipe = recompute.pack(o)
            sums.append(o.add_(x))
            recompute.register(o, torch.add, x, recipe, keep=True)
        return sums
    if isinstance(module, nn.Sequential):
        children = list(module)
        i = 0
        while i < len(children):
            child = children[i]
            following = children[i + 1] if i + 1 < len(children) else None
            if (isinstance(child, nn.BatchNorm1d) and child.training
                    and isinstance(following, _ACTIVATIONS)):  # batch norm → activation: fused
                parts = _pooled_batch_norm(child, parts, update_stats, following, recompute)
                i += 2
                continue
            parts = _layer_sync(child, parts, update_stats, recompute)
            i += 1
        return parts
    if isinstance(module, GLUConv):
        if _zero_padded(module.conv) and module.conv.groups == 1 and module.glu.dim == 1:
            return [_glu_conv(module.conv, part) for part in parts]
        return _layer_sync(module.glu, _layer_sync(module.conv, parts, update_stats, recompute),
                           update_stats, recompute)
    if not _needs_whole_batch(module):
        return [_apply_layer(module, part, recompute) for part in parts]
    raise TypeError(f"cannot run {type(module).__name__} micro-batch by micro-batch")


#: activations :func:`_pooled_batch_norm` can apply after batch norm (recomputed in backward)
_ACTIVATIONS = (nn.GELU, nn.ReLU)


def _pooled_batch_norm(bn: nn.BatchNorm1d, parts: list[Tensor], update_stats: bool,
                       activation: nn.Module | None = None,
                       recompute: _Recompute | None = None) -> list[Tensor]:
    """Training-mode batch norm of the union of ``parts`` ``[b, C, T]``: statistics (float32;
    float64 for float64 parts) over all parts; running statistics updated once if
    ``update_stats``; followed by ``activation`` (one of :data:`_ACTIVATIONS`) when given.
    With ``recompute``, the outputs are registered as recomputable from the inputs (which the
    layer keeps)."""
    count = sum(part.numel() // part.shape[1] for part in parts)
    dims = (0, *range(2, parts[0].dim()))
    with torch.no_grad():
        dtype = torch.promote_types(parts[0].dtype, torch.float32)  # float32 or float64
        mean = sum(part.sum(dim=dims, dtype=dtype) for part in parts) / count
        centre = _per_channel(mean, parts[0])
        var = torch.stack([(chunk - centre).square_().sum(dim=dims)
                           for part in parts for (chunk,) in _chunks(part)]).sum(0) / count
        if update_stats and bn.track_running_stats:
            bn.num_batches_tracked += 1
            momentum = 1 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
            bn.running_mean.mul_(1 - momentum).add_(mean, alpha=momentum)
            bn.running_var.mul_(1 - momentum).add_(var * count / (count - 1), alpha=momentum)
    weight = bn.weight if bn.affine else torch.ones_like(mean)
    bias = bn.bias if bn.affine else torch.zeros_like(mean)
    act = _activation_name(activation)
    outputs = list(_PooledBatchNorm.apply(weight, bias, mean, var, bn.eps, act, *parts))
    if recompute is not None:
        for output, part in zip(outputs, parts):
            recompute.register(output, _normalise, part, weight.detach(), bias.detach(), mean,
                               var, bn.eps, act)
    return outputs


class _PooledBatchNorm(torch.autograd.Function):
    """Batch norm of several parts with given whole-batch statistics and the exact
    whole-batch gradient, optionally followed by an activation (``act``: ``"none"``,
    ``"relu"``, ``"gelu-none"`` or ``"gelu-tanh"``).

    Forward: each part is normalised by the native (eval-mode) kernel with the pooled mean and
    variance, then activated. Only the inputs are kept for backward: the normalised values the
    activation's gradient needs are recomputed there (one elementwise pass), so a layer holds
    one tensor for backward instead of two. Backward: the native kernel gives, per chunk of a
    part (:func:`_chunks`), the partial sums ``Σg`` and ``Σg·x̂``; summed over the whole batch,
    they give the whole-batch gradient ``dx = γ/σ · (g − Σg/N − x̂·Σ(g·x̂)/N)``, computed in
    float32 and rounded once.
    """

    @staticmethod
    def forward(ctx, weight, bias, mean, var, eps, act, *parts):
        ctx.eps, ctx.act = eps, act
        ctx.save_for_backward(weight, bias, mean, var, *parts)
        return tuple(_normalise(part, weight, bias, mean, var, eps, act, out=_roomy_like(part))
                     for part in parts)

    @staticmethod
    def backward(ctx, *grads):
        weight, bias, mean, var, *parts = ctx.saved_tensors
        eps, act = ctx.eps, ctx.act
        count = sum(part.numel() // part.shape[1] for part in parts)
        invstd = torch.rsqrt(var + eps)
        # pass 1, chunk by chunk: the gradient at the batch norm's output (through the
        # activation, from the recomputed normalised values, into a new tensor) and its sums
        # Σg and Σg·x̂ from the native kernel (training-mode signature with the saved mean and
        # 1/σ, as CUDA requires; the sums do not depend on the mode)
        grads = [_same_layout(grad, part) for grad, part in zip(grads, parts)]
        outputs = [torch.empty_like(part) for part in parts]  # the gradients, in pass 2
        sums = []
        for grad, part, output in zip(grads, parts, outputs):
            for g, x, o in _chunks(grad, part, output):
                if act != "none":
                    g = _activation_backward(g, _normalise(x, weight, bias, mean, var, eps,
                                                           "none"), act, out=o)
                sums.append(torch.ops.aten.native_batch_norm_backward(
                    g, x, weight, None, None, mean, invstd, True, eps, [False, True, True])[1:])
        grad_weight, grad_bias = (torch.stack(found).sum(0) for found in zip(*sums))  # Σg·x̂, Σg
        # pass 2: the whole-batch gradient, in float32, rounded once into `outputs` (which
        # hold the activation's gradient, read before it is overwritten)
        scale = weight * invstd
        slope = scale * invstd * grad_weight / count
        offset = scale * grad_bias / count - mean * slope
        scale, slope, offset = (_per_channel(v, parts[0]) for v in (scale, -slope, -offset))
        for grad, part, output in zip(grads, parts, outputs):
            source = output if act != "none" else grad
            for g, x, o in _chunks(source, part, output):
                o.copy_(torch.addcmul(offset, x, slope).addcmul_(g, scale))
        return (grad_weight, grad_bias, None, None, None, None, *outputs)


#: samples per chunk in the elementwise passes of batch norm (:func:`_chunks`)
_CHUNK = 4


def _chunks(*tensors: Tensor) -> Iterator[tuple[Tensor, ...]]:
    """Matching views of :data:`_CHUNK` samples of each of ``tensors`` (of one batch size).

    Batch norm's passes go through a part chunk by chunk (about 1 MB of a paper-sized bf16
    part): the float32 values in between stay in cache instead of going to memory and back.
    """
    return zip(*(tensor.split(_CHUNK) for tensor in tensors))


def _roomy_like(x: Tensor) -> Tensor:
    """An empty tensor like ``x`` (same shape, dtype and layout: contiguous or time-major)
    at the start of a slightly larger memory block.

    For the outputs of batch norm, which live only until the next layer has run. PyTorch's CPU
    allocator asks glibc for aligned memory (``posix_memalign``), which glibc 2.36 serves from
    a free block of at least the size plus the alignment: a freed block of exactly a tensor's
    size cannot hold the next tensor of that size. Each such tensor freed between tensors kept
    for backward would leave a hole unused for the rest of the step (1.5 GB on the paper's
    batch-256 step, measured). The spare bytes let the convolutions' outputs take its place.
    Detached: autograd sees a tensor of its own, not a view.
    """
    b, c, *rest = x.shape
    spare = 256 // x.element_size()
    flat = torch.empty(x.numel() + spare, dtype=x.dtype, device=x.device)[: x.numel()]
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
        return flat.view(b, *rest, c).permute(0, 3, 1, 2).detach()
    return flat.view(x.shape).detach()


def _normalise(x: Tensor, weight: Tensor, bias: Tensor, mean: Tensor, var: Tensor, eps: float,
               act: str, out: Tensor | None = None) -> Tensor:
    """Batch norm of ``x`` with the given statistics (the kernel of ``torch.batch_norm`` in
    evaluation mode, so the same bits), then ``act``, into ``out`` (a new tensor by default):
    the forward of :class:`_PooledBatchNorm`."""
    out = torch.empty_like(x) if out is None else out
    unused = mean.new_empty(0), mean.new_empty(0)  # what the training-mode kernel saves
    for x_chunk, out_chunk in _chunks(x, out):
        torch.ops.aten.native_batch_norm.out(x_chunk, weight, bias, mean, var, False, 0.0, eps,
                                             out=out_chunk, save_mean=unused[0],
                                             save_invstd=unused[1])
        _activate(out_chunk, act)
    return out


def _activation_name(activation: nn.Module | None) -> str:
    """The name (see :class:`_PooledBatchNorm`) of one of :data:`_ACTIVATIONS` or None."""
    if activation is None:
        return "none"
    return "relu" if isinstance(activation, nn.ReLU) else f"gelu-{activation.approximate}"


def _activate(x: Tensor, act: str) -> Tensor:
    """``act`` (see :class:`_PooledBatchNorm`) applied to ``x``, in place."""
    if act == "relu":
        return x.relu_()
    if act.startswith("gelu"):
        return torch.ops.aten.gelu_(x, approximate=act.split("-", 1)[1])
    return x


def _activation_backward(grad: Tensor, x: Tensor, act: str, out: Tensor) -> Tensor:
    """The gradient with respect to the input ``x`` of ``act`` given that of its output,
    into ``out``."""
    if act == "relu":
        return torch.ops.aten.threshold_backward.grad_input(grad, x, 0, grad_input=out)
    return torch.ops.aten.gelu_backward.grad_input(grad, x, approximate=act.split("-", 1)[1],
                                                   grad_input=out)


class _Recipe:
    """How to compute again a tensor that backward needs: ``compute(*inputs)``, where an input
    is a tensor or another recipe; with ``keep``, the value is kept once computed (for a tensor
    that several backward steps need) until the recipe is released."""

    __slots__ = ("compute", "inputs", "keep", "value")

    def __init__(self, compute: Callable[..., Tensor], inputs: Sequence[object], keep: bool):
        self.compute, self.inputs, self.keep = compute, inputs, keep
        self.value: Tensor | None = None

    def __call__(self) -> Tensor:
        if self.value is not None:
            return self.value
        with torch.no_grad():
            value = self.compute(*(x() if isinstance(x, _Recipe) else x for x in self.inputs))
        if self.keep:
            self.value = value
        return value


class _Recompute:
    """Saved-tensor hooks that keep cheap tensors as recipes instead of values (the ``fast``
    step's forward).

    Backward needs the input of every convolution. In a block, those are the residual sums
    ``x + act(bn(y))``, which cost a convolution's input each to keep, while ``x`` (a
    convolution's input) and ``y`` (batch norm's) are kept anyway: a registered tensor
    (:meth:`register`) that a layer saves for backward is kept as a :class:`_Recipe` and
    computed again, by the same operations and so to the same bits, when backward needs it.
    A tensor is recognised by identity while it is alive; the registry does not keep it alive.
    """

    def __init__(self) -> None:
        self._recipes: dict[int, tuple[weakref.ref, _Recipe]] = {}

    def register(self, tensor: Tensor, compute: Callable[..., Tensor], *inputs: object,
                 keep: bool = False) -> None:
        """Register ``tensor`` as ``compute(*inputs)``, where the inputs are tensors that
        backward keeps anyway or recipes (:meth:`pack` of a registered tensor)."""
        key = id(tensor)
        forget = lambda _: self._recipes.pop(key, None)  # noqa: E731
        self._recipes[key] = (weakref.ref(tensor, forget),
                              _Recipe(compute, [self.pack(x) for x in inputs], keep))

    def cat(self, tensors: Sequence[Tensor]) -> Tensor:
        """``torch.cat(tensors)``, registered as recomputable from ``tensors``."""
        merged = torch.cat(tensors)
        self.register(merged, lambda *pieces: torch.cat(pieces), *tensors)
        return merged

    def recomputable(self, tensor: Tensor) -> bool:
        """Whether ``tensor`` is registered."""
        return self.pack(tensor) is not tensor

    def pack(self, tensor: object) -> object:
        found = self._recipes.get(id(tensor))
        return found[1] if found is not None and found[0]() is tensor else tensor

    @staticmethod
    def unpack(saved: object) -> object:
        return saved() if isinstance(saved, _Recipe) else saved

    def hooks(self) -> contextlib.AbstractContextManager:
        """The context in which layers save registered tensors as recipes."""
        return torch.autograd.graph.saved_tensors_hooks(self.pack, self.unpack)


def _whole_batch_dropout(p: float, parts: list[Tensor]) -> list[Tensor]:
    """Dropout of the concatenated parts with one mask drawn for the whole batch, as
    ``F.dropout`` draws it on CPU (``bernoulli_(1 - p)`` of a batch-shaped tensor, / (1 - p))."""
    sizes = [len(part) for part in parts]
    noise = parts[0].new_empty((sum(sizes), *parts[0].shape[1:])).bernoulli_(1 - p)
    noise.div_(1 - p)
    return [part * _same_layout(piece, part) for part, piece in zip(parts, noise.split(sizes))]


def _rng_state(device: torch.device) -> _RNGState:
    """The CPU random-number state, and ``device``'s when it is a CUDA device."""
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return device, torch.get_rng_state(), cuda


@contextlib.contextmanager
def _replayed_rng(state: _RNGState) -> Iterator[None]:
    """Run with the random-number generators set to ``state``; restore them afterwards."""
    device, cpu, cuda = state
    with torch.random.fork_rng(devices=[device] if cuda is not None else []):
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state(cuda, device)
        yield
