// The Node.js baseline of the benchmark: what a user might deploy instead of the gateway.
//
// POST / takes {"credential": "<compact JWS>"}, checks its ES256 signature with jose's
// compactVerify against one public key (the same JWK as the naive aiohttp + PyJWT
// endpoint), parses the payload and answers {"valid": true, "jti": ...}: one signature
// check and JSON, no trust list, status list, receipt or audit record. GET / answers
// {"status": "ok"} for readiness. One process, node:http, no framework.
//
//   node server.js --port PORT --jwk FILE
//
// Runs until SIGTERM or SIGINT.

import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { parseArgs } from "node:util";

import { compactVerify, importJWK } from "jose";

const { values: options } = parseArgs({
  options: {
    port: { type: "string" },
    jwk: { type: "string" },
    host: { type: "string", default: "127.0.0.1" },
  },
});
if (!options.port || !options.jwk) {
  console.error("usage: node server.js --port PORT --jwk FILE");
  process.exit(2);
}

const key = await importJWK(JSON.parse(readFileSync(options.jwk, "utf8")), "ES256");
const verifyOptions = { algorithms: ["ES256"] };
const utf8 = new TextDecoder();
const READY = JSON.stringify({ status: "ok" });

function answer(response, status, body) {
  response.writeHead(status, {
    "Content-Type": "application/json",
    "Content-Length": Buffer.byteLength(body),
  });
  response.end(body);
}

async function verify(body) {
  const { credential } = JSON.parse(body);
  const { payload } = await compactVerify(credential, key, verifyOptions);
  const claims = JSON.parse(utf8.decode(payload));
  return JSON.stringify({ valid: true, jti: claims.jti ?? null });
}

const server = createServer((request, response) => {
  if (request.method !== "POST") {
    answer(response, 200, READY);
    request.resume();
    return;
  }
  const chunks = [];
  request.on("data", (chunk) => chunks.push(chunk));
  request.on("end", () => {
    verify(Buffer.concat(chunks).toString("utf8")).then(
      (body) => answer(response, 200, body),
      (error) => answer(response, 400,
        JSON.stringify({ valid: false, error: error.code ?? error.name })),
    );
  });
});
server.keepAliveTimeout = 120_000;
server.listen(Number(options.port), options.host, () => {
  console.log(`node baseline (jose compactVerify) on ${options.host}:${options.port}`);
});

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    server.closeAllConnections();
    server.close(() => process.exit(0));
  });
}
