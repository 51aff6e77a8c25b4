"""Small apps the studio's browser tests drive: built here, so every test knows exactly which
node runs, which fails and which is never reached."""

from __future__ import annotations

from typing import Any

# node id -> (type, name, code or None, outputs: {output: target}, position)
DEMO_NODES: dict[str, tuple[str, str, str | None, dict[str, str], tuple[int, int]]] = {
    "start": ("starter", "start", None, {"output_1": "greet"}, (40, 60)),
    "greet": (
        "js",
        "greet",
        "function main() {\n"
        "  payload.who = path_vars.who;\n"
        "  payload.big = 'x'.repeat(2500);\n"
        "  console.log('hello ' + payload.who);\n"
        "  next = payload.who === 'bad' ? 'output_2' : 'output_1';\n"
        "}\n",
        {"output_1": "fork", "output_2": "boom"},
        (300, 60),
    ),
    "fork": ("gorutine", "fork", None, {"output_1": "answer", "output_2": "background"}, (560, 40)),
    "answer": (
        "js",
        "answer",
        "function main() {\n  payload.done = true;\n  c.JSON(200, {who: payload.who, done: true});\n}\n",
        {},
        (820, 20),
    ),
    "background": (
        "js",
        "background",
        "function main() {\n  payload.bg = 1;\n  console.log('in the background');\n}\n",
        {},
        (820, 200),
    ),
    "boom": (
        "js",
        "boom",
        "function main() {\n  payload.before_boom = 1;\n  throw new Error('boom on purpose');\n}\n",
        {},
        (560, 260),
    ),
    "lonely": ("js", "lonely", "function main() {}\n", {}, (300, 320)),
}


def demo(url: str = "/demo/:who") -> dict[str, Any]:
    """starter -> greet -> fork -> answer (background branch: background); greet takes
    output_2 to boom (throws) when who is "bad"; lonely is never reached."""
    data: dict[str, Any] = {}
    for nid, (kind, name, code, outs, (x, y)) in DEMO_NODES.items():
        fields: dict[str, Any] = {"type": kind, "name_box": name, "nflow_auth": "false"}
        if kind == "starter":
            fields.update(method="GET", urlpattern=url)
        if code is not None:
            fields["code"] = code
        count = 2 if kind == "gorutine" else max(1, len(outs))
        data[nid] = {
            "id": nid,
            "name": kind,
            "data": fields,
            "class": kind,
            "html": f"<div>{name}</div>",
            "typenode": False,
            "inputs": {} if kind == "starter" else {"input_1": {"connections": []}},
            "outputs": {f"output_{i}": {"connections": []} for i in range(1, count + 1)},
            "pos_x": x,
            "pos_y": y,
        }
    for nid, (_, _, _, outs, _) in DEMO_NODES.items():
        for out, target in outs.items():
            data[nid]["outputs"][out]["connections"].append({"node": target, "output": "input_1"})
            data[target]["inputs"]["input_1"]["connections"].append({"node": nid, "input": out})
    return {"drawflow": {"Home": {"data": data}}}
