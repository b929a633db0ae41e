"""Rewrites of the exported generator graph (optimum's causal LM with past key values) that make it cheaper to run
and leave what it computes unchanged.

- :func:`keep_last_logits`: the vocabulary projection reads only the last positions, the only ones the decoder
  reads (:func:`restore_every_logit` undoes it, for the benchmark and the test that compare the two).
- :func:`share_kv_heads`: each key/value head is read in place by its group of query heads, instead of being
  copied once per query head at every step.
- :func:`fuse_grouped_query_attention`: each layer's attention becomes ORT's ``GroupQueryAttention``, whose
  key/value cache is one buffer written in place, instead of a new cache concatenated at every step (the same
  attention, its float sums ORT's: the export compares the texts with PyTorch's).
"""

from __future__ import annotations

import heapq
from pathlib import Path

from trail.serving_contract import GENERATOR_LOGITS, IN_PLACE_CACHE_INPUTS, past_input, present_output

__all__ = ["fuse_grouped_query_attention", "keep_last_logits", "restore_every_logit", "share_kv_heads"]

_LOGIT_CUT = "/lm_head/KeepLastPositions"  # the Slice node keep_last_logits inserts


def keep_last_logits(graph_path: Path, positions: int) -> bool:
    """Rewrite the generator so its vocabulary projection (the MatMul that writes the logits) reads only the last
    ``positions`` positions; True if rewritten, False if the logits come from another op (the graph is kept).

    The decoder reads the logits of the prompt's last position and of each step's fed tokens, never the rest:
    optimum's graph projects every prompt position onto the vocabulary, a fifth of a prefill's work."""
    import onnx
    from onnx import TensorProto, helper

    graph_model = onnx.load(str(graph_path))
    graph = graph_model.graph
    producer = next((node for node in graph.node if GENERATOR_LOGITS in node.output), None)
    if producer is None or producer.op_type != "MatMul":
        return False
    hidden, sliced = producer.input[0], producer.input[0] + "_last_positions"
    graph.initializer.extend([helper.make_tensor(f"{sliced}_{name}", TensorProto.INT64, [1], [value])
                              for name, value in (("starts", -positions), ("ends", 2**62), ("axes", 1))])
    slice_node = helper.make_node("Slice", [hidden, f"{sliced}_starts", f"{sliced}_ends", f"{sliced}_axes"],
                                  [sliced], name=_LOGIT_CUT)
    producer.input[0] = sliced
    graph.node.insert(list(graph.node).index(producer), slice_node)
    logits = next(output for output in graph.output if output.name == GENERATOR_LOGITS)
    logits.type.tensor_type.shape.dim[1].dim_param = "logit_positions"
    onnx.checker.check_model(graph_model)
    onnx.save(graph_model, str(graph_path))
    return True


def restore_every_logit(graph_path: Path) -> bool:
    """Undo :func:`keep_last_logits` (the graph an older export wrote); True if there was a cut to undo."""
    import onnx

    graph_model = onnx.load(str(graph_path))
    graph = graph_model.graph
    cut = next((node for node in graph.node if node.name == _LOGIT_CUT), None)
    if cut is None:
        return False
    for node in graph.node:
        node.input[:] = [cut.input[0] if name == cut.output[0] else name for name in node.input]
    graph.node.remove(cut)
    for initializer in [i for i in graph.initializer if i.name in cut.input[1:]]:
        graph.initializer.remove(initializer)
    onnx.save(graph_model, str(graph_path))
    return True


class _Unmatched(Exception):
    """The graph's attention is not the exported one a rewrite here knows: keep the graph as it is."""


def share_kv_heads(graph_path: Path, heads: int, kv_heads: int) -> int:
    """Rewrite grouped-query attention so no key/value head is copied; returns the number of copies removed (0:
    the graph is kept as it was, e.g. a model without grouped heads).

    transformers' ``repeat_kv`` is exported as Unsqueeze → Expand → Reshape of each layer's whole cache
    (``present.L.key``/``value``, ``kv_heads`` heads) into ``heads`` heads, at every step: with SmolLM2's 9 query
    heads on 3 key/value heads that writes three copies of the cache per layer, 17% of a batch of 10's decoding
    time on 2 cores (ORT profile). Query head h reads key/value head h // (heads / kv_heads), so the queries are
    instead reshaped to [batch, kv_heads, group × positions, dim] and multiplied with the cache in place; the
    scores (and the attention output) are reshaped back. Every dot product is the same one, over the same
    numbers; the test of the export compares the texts and logits with PyTorch's."""
    import onnx
    from onnx import TensorProto, helper

    if kv_heads >= heads or heads % kv_heads:
        return 0
    graph_model = onnx.load(str(graph_path))
    graph = graph_model.graph
    producers, consumers = _links(graph)
    grouped, ungrouped = "/kv_groups/grouped_shape", "/kv_groups/heads_shape"
    graph.initializer.extend([helper.make_tensor(grouped, TensorProto.INT64, [4], [0, kv_heads, -1, 0]),
                              helper.make_tensor(ungrouped, TensorProto.INT64, [4], [0, heads, -1, 0])])
    regrouped: list = []  # the MatMuls to wrap in a Reshape on each side

    def constant(name: str):
        return _constant(graph, producers, name)

    copies = 0
    try:
        for expand in [node for node in graph.node if node.op_type == "Expand"]:
            unsqueeze = producers.get(expand.input[0])
            if unsqueeze is None or unsqueeze.op_type != "Unsqueeze" or not unsqueeze.input[0].startswith("present."):
                continue
            cache = unsqueeze.input[0]
            if list(constant(unsqueeze.input[1]).ravel()) != [2]:
                raise _Unmatched(f"{unsqueeze.name} unsqueezes another axis")
            (reshape,) = consumers[expand.output[0]]
            if reshape.op_type != "Reshape":
                raise _Unmatched(f"{expand.name} feeds a {reshape.op_type}")
            for user in consumers[reshape.output[0]]:
                if user.op_type == "Shape":  # only its batch, position or dim sizes may be read: the cache's own
                    if any(gather.op_type != "Gather" or int(constant(gather.input[1])) == 1
                           for gather in consumers[user.output[0]]):
                        raise _Unmatched(f"{user.name}: the number of heads is read")
                    user.input[0] = cache
                elif user.op_type == "MatMul" and user.input[1] == reshape.output[0]:  # probabilities x values
                    user.input[1] = cache
                    regrouped.append(user)
                elif user.op_type == "Transpose" and list(user.attribute[0].ints) == [0, 1, 3, 2]:  # keys
                    user.input[0] = cache
                    link = user
                    while True:
                        (after,) = consumers[link.output[0]]
                        if after.op_type == "MatMul" and after.input[1] == link.output[0]:
                            regrouped.append(after)
                            break
                        other = [name for name in after.input if name != link.output[0]]
                        scale = constant(other[0]) if after.op_type == "Mul" and len(other) == 1 else None
                        if scale is None or scale.size != 1:  # a scalar scale holds for any grouping of heads
                            raise _Unmatched(f"{after.name} between the keys and the scores")
                        link = after
                else:
                    raise _Unmatched(f"{user.name} ({user.op_type}) reads the copied heads")
            copies += 1
    except (_Unmatched, KeyError, ValueError, TypeError):
        return 0
    if not copies:
        return 0
    for matmul in regrouped:  # [b, heads, q, ·] → [b, kv_heads, group × q, ·] → MatMul → back to [b, heads, q, ·]
        left, out = matmul.input[0], matmul.output[0]
        matmul.input[0], matmul.output[0] = f"{left}_kv_grouped", f"{out}_kv_grouped"
        position = list(graph.node).index(matmul)
        graph.node.insert(position + 1, helper.make_node("Reshape", [matmul.output[0], ungrouped], [out],
                                                         name=f"{matmul.name}_UngroupHeads"))
        graph.node.insert(position, helper.make_node("Reshape", [left, grouped], [matmul.input[0]],
                                                     name=f"{matmul.name}_GroupQueries"))
    _drop_dead_nodes(graph)
    onnx.checker.check_model(graph_model)
    onnx.save(graph_model, str(graph_path))
    return copies


def fuse_grouped_query_attention(graph_path: Path, heads: int, kv_heads: int) -> int:
    """Rewrite every layer's attention as one ``com.microsoft.GroupQueryAttention`` node; returns the number of
    layers rewritten (0: the graph is kept as it was).

    optimum's graph writes ``present.L.key``/``value`` as Concat(past, new) at every step: a copy of the whole cache
    per layer per step: 22% of a decoding step's ORT profile at a batch of 10 rows over 230 cached positions, 28%
    over 460, on 2 cores (40 ms a step over 10 positions, 60 over 230, 80 over 460; README).
    ``GroupQueryAttention`` writes the new positions into the cache it reads when past and present are bound to
    the same buffer, and it takes each row's length (``seqlens_k``) instead of a padding mask, so rows of different
    lengths need no padding either. The rotary embedding stays the graph's own (from ``position_ids``); the node
    gets the rotated queries and keys. The graph then reads :data:`~trail.serving_contract.IN_PLACE_CACHE_INPUTS`
    instead of the attention mask, and the runner (``TrailOnnx``) drives it with per-row lengths. The attention's float sums are ORT's, no longer the exported
    ops': the export's check compares the texts with PyTorch's, as for every rewrite here. Without grouped heads
    (``kv_heads == heads``) the node is plain multi-head attention, which it also computes."""
    import onnx
    from onnx import TensorProto, helper

    if heads % kv_heads:
        return 0
    graph_model = onnx.load(str(graph_path))
    graph = graph_model.graph
    producers, consumers = _links(graph)
    weights = {init.name for init in graph.initializer}

    def scalar(name: str) -> float | None:
        value = _constant(graph, producers, name)
        return float(value.ravel()[0]) if value is not None and value.size == 1 else None

    def first_matmul_after(name: str):
        """The first MatMul reached from ``name`` through consumers (a tensor's size read by Shape is no path)."""
        frontier, seen = [name], set()
        while frontier:
            following = []
            for tensor in frontier:
                for node in consumers.get(tensor, []):
                    if id(node) in seen or node.op_type == "Shape":
                        continue
                    seen.add(id(node))
                    if node.op_type == "MatMul":
                        return node
                    following.extend(node.output)
            frontier = following
        raise _Unmatched(f"no MatMul after {name}")

    def reader_after_reshapes(name: str):
        """The node that reads ``name``, looking through Reshapes (the grouping of query heads); None if several."""
        readers = consumers.get(name, [])
        while len(readers) == 1 and readers[0].op_type == "Reshape":
            readers = consumers.get(readers[0].output[0], [])
        return readers[0] if len(readers) == 1 else None

    def new_tensor(name: str, op: str, inputs: list[str], **attributes) -> str:
        graph.node.append(helper.make_node(op, inputs, [name], name=name, **attributes))
        return name

    layers = sorted(int(output.name.split(".")[1]) for output in graph.output
                    if output.name.startswith("present.") and output.name.endswith(".key"))
    to_bsh = "/gqa/bsh_shape"
    rewritten: list[tuple] = []
    try:
        for layer in layers:
            concat_key = producers[present_output(layer, "key")]
            concat_value = producers[present_output(layer, "value")]
            if concat_key.op_type != "Concat" or concat_value.op_type != "Concat" \
                    or list(concat_key.input[:1]) != [past_input(layer, "key")] \
                    or list(concat_value.input[:1]) != [past_input(layer, "value")]:
                raise _Unmatched(f"layer {layer}: the cache is not Concat(past, new)")
            scores = first_matmul_after(present_output(layer, "key"))
            after_scores = reader_after_reshapes(scores.output[0])
            if after_scores is None or after_scores.op_type in ("Mul", "Div"):
                raise _Unmatched(f"{scores.name}: the scores are scaled after the product")  # a scale this misses
            query, scale = scores.input[0], 1.0
            while producers[query].op_type in ("Mul", "Reshape"):  # q x sqrt(scale), the grouping of heads
                node = producers[query]
                if node.op_type == "Mul":
                    factor = scalar(node.input[1])
                    if factor is None:
                        raise _Unmatched(f"{node.name}: not a scalar scale")
                    scale *= factor
                query = node.input[0]
            key_side = producers[scores.input[1]]
            if key_side.op_type == "Mul":  # k x sqrt(scale), as torch's attention exports it
                factor = scalar(key_side.input[1])
                if factor is None:
                    raise _Unmatched(f"{key_side.name}: not a scalar scale")
                scale *= factor
            projection = first_matmul_after(first_matmul_after(present_output(layer, "value")).output[0])
            if projection.input[1] not in weights:
                raise _Unmatched(f"{projection.name}: the attention's output projection has no weight")
            rewritten.append((layer, concat_key, concat_value, query, scale, projection))
    except (_Unmatched, KeyError, IndexError, ValueError, TypeError):
        return 0
    if not rewritten:
        return 0
    graph.initializer.append(helper.make_tensor(to_bsh, TensorProto.INT64, [3], [0, 0, -1]))
    seqlens, total = IN_PLACE_CACHE_INPUTS
    for layer, concat_key, concat_value, query, scale, projection in rewritten:
        prefix = f"/model/layers.{layer}/gqa/"

        def bsh(tensor: str, what: str) -> str:  # [batch, heads, positions, dim] -> [batch, positions, heads x dim]
            moved = new_tensor(f"{prefix}{what}_bsnh", "Transpose", [tensor], perm=[0, 2, 1, 3])
            return new_tensor(f"{prefix}{what}_bsh", "Reshape", [moved, to_bsh])

        inputs = [bsh(query, "query"), bsh(concat_key.input[1], "key"), bsh(concat_value.input[1], "value"),
                  past_input(layer, "key"), past_input(layer, "value"), seqlens, total]
        attended = f"{prefix}output"
        graph.node.remove(concat_key)
        graph.node.remove(concat_value)
        graph.node.append(helper.make_node(
            "GroupQueryAttention", inputs, [attended, present_output(layer, "key"), present_output(layer, "value")],
            name=f"{prefix}GroupQueryAttention", domain="com.microsoft", num_heads=heads, kv_num_heads=kv_heads,
            scale=scale))
        projection.input[0] = attended
    graph.input.extend([helper.make_tensor_value_info(seqlens, TensorProto.INT32, ["batch_size"]),
                        helper.make_tensor_value_info(total, TensorProto.INT32, [])])
    if not any(opset.domain == "com.microsoft" for opset in graph_model.opset_import):
        graph_model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    _drop_dead_nodes(graph)
    read = {name for node in graph.node for name in node.input}
    for unread in [graph_input for graph_input in graph.input if graph_input.name not in read]:
        graph.input.remove(unread)  # the attention mask: lengths replace it
    if "attention_mask" in {graph_input.name for graph_input in graph.input}:
        return 0  # something else still reads the mask, which the runner no longer feeds: keep the file as it was
    _topological_sort(graph)
    onnx.checker.check_model(graph_model)
    onnx.save(graph_model, str(graph_path))
    return len(rewritten)


def _links(graph) -> tuple[dict, dict[str, list]]:
    """Each tensor's producing node, and the nodes that read it."""
    producers = {output: node for node in graph.node for output in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    return producers, consumers


def _constant(graph, producers: dict, name: str):
    """The value of ``name`` when a Constant node or an initializer holds it (a numpy array), else None."""
    from onnx import numpy_helper

    node = producers.get(name)
    if node is not None and node.op_type == "Constant":
        return numpy_helper.to_array(node.attribute[0].t)
    return next((numpy_helper.to_array(i) for i in graph.initializer if i.name == name), None)


def _topological_sort(graph) -> None:
    """Order ``graph``'s nodes so every node comes after the producers of its inputs (new nodes were appended)."""
    nodes = list(graph.node)
    producer = {output: index for index, node in enumerate(nodes) for output in node.output}
    waiting = [len({producer[name] for name in node.input if name in producer}) for node in nodes]
    followers: dict[int, list[int]] = {}
    for index, node in enumerate(nodes):
        for source in {producer[name] for name in node.input if name in producer}:
            followers.setdefault(source, []).append(index)
    ready = [index for index, count in enumerate(waiting) if count == 0]
    heapq.heapify(ready)  # the earliest node first: the order of the nodes that were already in order is kept
    ordered: list[int] = []
    while ready:
        index = heapq.heappop(ready)
        ordered.append(index)
        for follower in followers.get(index, []):
            waiting[follower] -= 1
            if waiting[follower] == 0:
                heapq.heappush(ready, follower)
    if len(ordered) != len(nodes):
        raise ValueError("the rewritten graph has a cycle")
    del graph.node[:]
    graph.node.extend(nodes[index] for index in ordered)


def _drop_dead_nodes(graph) -> None:
    """Remove every node none of whose outputs is read (by a node or as a graph output), repeatedly."""
    outputs = {output.name for output in graph.output}
    while True:
        read = outputs | {name for node in graph.node for name in node.input}
        dead = [node for node in graph.node if not any(output in read for output in node.output)]
        if not dead:
            return
        for node in dead:
            graph.node.remove(node)
