"""`drkernel client info|optimize|evaluate --server HOST:PORT`: what IDE tooling calls."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict

from protos.drkernel.v1 import optimizer_pb2 as pb
from protos.drkernel.v1 import result_pb2 as rpb
from server.client import Client, Connection, module_request


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "client", help="call a running drkernel server")
    p.add_argument("--server", default="localhost:50051", help="HOST:PORT")
    p.add_argument("--token", default=os.environ.get("DRKERNEL_AUTH_TOKEN"),
                   help="bearer token (default: $DRKERNEL_AUTH_TOKEN)")
    p.add_argument("--ca-file", type=Path, help="CA certificate: connect with TLS")
    p.add_argument("--cert-file", type=Path, help="client certificate (mTLS)")
    p.add_argument("--key-file", type=Path, help="client key (mTLS)")
    p.add_argument("--timeout", type=float, help="deadline in seconds")
    p.add_argument("--json", action="store_true", help="print protos as JSON lines")
    actions = p.add_subparsers(dest="action", required=True)
    actions.add_parser("info", help="model, backend, device, versions, limits")
    opt = actions.add_parser("optimize", help="refine a reference, streaming the events")
    opt.add_argument("reference", type=Path,
                     help="a KernelBench-format file, or FILE.py:Class for a class of your "
                          "own code (with --inputs), which the server writes out as the "
                          "problem")
    opt.add_argument("--inputs", help="FILE.py:Class: forward inputs as JSON shapes "
                                      "([[2, 64]]) or a function in FILE returning them")
    opt.add_argument("--init", default="", help="FILE.py:Class: constructor arguments as JSON")
    opt.add_argument("--max-turns", type=int)
    opt.add_argument("--samples-per-turn", type=int)
    ev = actions.add_parser("evaluate", help="judge a candidate, no model")
    ev.add_argument("reference", type=Path)
    ev.add_argument("candidate", type=Path)
    return p


def run(args: argparse.Namespace) -> int:
    connection = Connection.from_files(args.server, args.token, args.ca_file, args.cert_file,
                                       args.key_file)
    try:
        with Client(connection) as client:
            return _ACTIONS[args.action](client, args)
    except grpc.RpcError as exc:
        print(f"drkernel client: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"drkernel client: {exc}", file=sys.stderr)
        return 2


def _info(client: Client, args: argparse.Namespace) -> int:
    _print(client.info(args.timeout or 10.0), args)
    return 0


def _optimize(client: Client, args: argparse.Namespace) -> int:
    policy = {k: v for k, v in (("max_turns", args.max_turns),
                                ("samples_per_turn", args.samples_per_turn)) if v is not None}
    path, sep, class_name = str(args.reference).rpartition(":")
    if sep and class_name.isidentifier():
        if not args.inputs:
            print("drkernel client: FILE.py:Class needs --inputs", file=sys.stderr)
            return 2
        module = module_request(Path(path), class_name, args.inputs, args.init)
        events = client.optimize("", name=class_name, module=module, policy=policy,
                                 timeout_s=args.timeout)
    else:
        events = client.optimize(args.reference.read_text(), name=args.reference.stem,
                                 policy=policy, timeout_s=args.timeout)
    for event in events:
        if args.json:
            _print(event, args)
        else:
            print(_describe(event))
    return 0


def _evaluate(client: Client, args: argparse.Namespace) -> int:
    response = client.evaluate(args.reference.read_text(), args.candidate.read_text(),
                               name=args.reference.stem, timeout_s=args.timeout)
    if args.json:
        _print(response, args)
    else:
        # Imported here: the text summary goes through `evaluator`, which imports torch
        # (seconds); the other actions need neither.
        from server.commands.eval import summary
        from server.mapping import result_from_proto

        print(summary(result_from_proto(response.result)))
    return 0


_ACTIONS = {"info": _info, "optimize": _optimize, "evaluate": _evaluate}


def _print(message: Any, args: argparse.Namespace) -> None:
    data = MessageToDict(message, preserving_proto_field_name=True)
    print(json.dumps(data) if args.json else json.dumps(data, indent=2))


def _describe(event: pb.OptimizeEvent) -> str:
    kind = event.WhichOneof("event")
    if kind == "problem_built":
        b = event.problem_built
        return f"problem written from {b.how}{f' ({b.note})' if b.note else ''}:\n{b.reference}"
    if kind == "turn_started":
        e = event.turn_started
        return f"turn {e.turn} (iteration {e.iteration}, {e.samples} sample(s))"
    if kind == "generated":
        g = event.generated
        code = "code" if g.HasField("code") else "no python block"
        return (f"  generated {g.turn}.{g.sample}: {g.usage.generated_tokens} tokens in "
                f"{g.generate_s:.1f} s, {code}")
    if kind in ("evaluated", "best_updated"):
        t = getattr(event, kind).turn
        status = rpb.EvalStatus.Name(t.result.status) if t.HasField("result") \
            else "FORMAT_ERROR"
        label = "judged" if kind == "evaluated" else "best so far:"
        return f"  {label} {t.turn}.{t.sample}: {status.removeprefix('EVAL_STATUS_').lower()}" \
               f", reward {t.reward:.3f}"
    f = event.finished
    lines = [f"finished: {f.summary.stop_reason}{' (partial)' if f.partial else ''}, "
             f"{len(f.summary.turns)} turn(s), {f.usage.generated_tokens} generated tokens"]
    if f.HasField("best"):
        lines += [f"best: turn {f.best.turn}.{f.best.sample}, reward {f.best.reward:.3f}",
                  f.best.code]
    else:
        lines.append("no correct candidate")
    return "\n".join(lines)
