#!/usr/bin/env node
// What an editor extension sends when the user asks "make this class faster": the file's
// source, the class name, its constructor arguments and input shapes. The server writes the
// KernelBench problem in its sandbox and streams the same events as for a reference.
//
//   node optimize_module.js --server localhost:50051 FILE.py CLASS --inputs '[[8, 64]]' \
//       [--init '[64]'] [--max-turns 3] [--token TOKEN] [--json]
//
// Prints one line per event (or the events as JSON lines with --json); exits 0 when the
// session finished, 1 on an RPC error (with the status code and the server's message).

const fs = require("fs");
const path = require("path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const PROTOS = path.resolve(__dirname, "..", "..", "protos");

function parseArgs(argv) {
  const args = { server: "localhost:50051", init: "", maxTurns: 0, json: false, positional: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--server") args.server = argv[++i];
    else if (a === "--inputs") args.inputs = argv[++i];
    else if (a === "--init") args.init = argv[++i];
    else if (a === "--max-turns") args.maxTurns = Number(argv[++i]);
    else if (a === "--token") args.token = argv[++i];
    else if (a === "--json") args.json = true;
    else args.positional.push(a);
  }
  if (args.positional.length !== 2 || !args.inputs) {
    console.error("usage: optimize_module.js [--server HOST:PORT] FILE.py CLASS --inputs JSON " +
                  "[--init JSON] [--max-turns N] [--token TOKEN] [--json]");
    process.exit(2);
  }
  return args;
}

function loadService() {
  const definition = protoLoader.loadSync("drkernel/v1/optimizer.proto", {
    includeDirs: [PROTOS], keepCase: true, longs: Number, enums: String, defaults: false,
    oneofs: true,
  });
  return grpc.loadPackageDefinition(definition).drkernel.v1.KernelOptimizer;
}

function describe(event) {
  switch (event.event) {
    case "problem_built":
      return `problem written from ${event.problem_built.how}`;
    case "turn_started":
      return `turn ${event.turn_started.turn}`;
    case "generated":
      return `  generated ${event.generated.turn}.${event.generated.sample}`;
    case "evaluated":
    case "best_updated": {
      const turn = event[event.event].turn;
      const status = turn.result ? turn.result.status : "FORMAT_ERROR";
      const label = event.event === "evaluated" ? "judged" : "best so far:";
      return `  ${label} ${turn.turn}.${turn.sample}: ${status}, reward ${turn.reward || 0}`;
    }
    case "finished": {
      const f = event.finished;
      const best = f.best ? `best turn ${f.best.turn}` : "no correct candidate";
      return `finished: ${f.summary.stop_reason}, ${best}`;
    }
    default:
      return event.event;
  }
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  const [file, className] = args.positional;
  const KernelOptimizer = loadService();
  const client = new KernelOptimizer(args.server, grpc.credentials.createInsecure());
  const metadata = new grpc.Metadata();
  if (args.token) metadata.set("authorization", `Bearer ${args.token}`);
  const request = {
    name: className,
    module: {
      source: fs.readFileSync(file, "utf8"),
      class_name: className,
      init_json: args.init,
      inputs_json: args.inputs,
      file_name: path.basename(file),
    },
  };
  if (args.maxTurns) request.policy = { max_turns: args.maxTurns };
  const call = client.Optimize(request, metadata);
  let finished = false;
  call.on("data", (event) => {
    finished = finished || event.event === "finished";
    console.log(args.json ? JSON.stringify(event) : describe(event));
  });
  call.on("error", (err) => {
    console.error(`${grpc.status[err.code]}: ${err.details}`);
    process.exitCode = 1;
  });
  call.on("end", () => {
    client.close();
    if (!finished && !process.exitCode) process.exitCode = 1;
  });
}

main();
