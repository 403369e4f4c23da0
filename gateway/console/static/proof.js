// The console's in-browser check of an audit entry (RFC 6962 / RFC 9162 2.1.3.2 and
// C2SP signed-note / tlog-checkpoint), with Web Crypto only: SHA-256 and Ed25519.
// 1. leaf hash = SHA-256(0x00 || leaf); fold the inclusion path into a root;
// 2. the checkpoint of the proof names that tree size and root, and carries an Ed25519
//    signature by the log's published key (GET /v1/audit/key), checked here;
// 3. the currently published checkpoint (GET /v1/audit/checkpoint) is signed by the same
//    key; when its size is the proof's, its root must be the same.
"use strict";
(function () {
  const out = document.getElementById("proof-result");
  const steps = document.getElementById("proof-steps");
  const DASH = "\u2014 ";
  const enc = new TextEncoder();

  function step(ok, text) {
    const li = document.createElement("li");
    li.className = ok ? "ok" : "fail";
    li.textContent = (ok ? "\u2713 " : "\u2717 ") + text;
    steps.appendChild(li);
  }
  function finish(ok, text) {
    out.dataset.state = ok ? "verified" : "failed";
    out.className = ok ? "flash ok" : "flash error";
    out.textContent = text;
  }
  function b64(text) {
    const bin = atob(text);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return bytes;
  }
  function concat(...parts) {
    const n = parts.reduce((a, p) => a + p.length, 0);
    const out = new Uint8Array(n);
    let at = 0;
    for (const p of parts) { out.set(p, at); at += p.length; }
    return out;
  }
  function hex(bytes) {
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }
  function same(a, b) {
    if (a.length !== b.length) return false;
    let d = 0;
    for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
    return d === 0;
  }
  async function sha256(bytes) {
    return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  }

  // RFC 9162 2.1.3.2: the root an inclusion path leads to (null when the path is malformed).
  async function rootFromPath(index, size, leafHash, path) {
    if (index >= size) return null;
    let fn = index, sn = size - 1, r = leafHash;
    for (const p of path) {
      if (sn === 0) return null;
      if (fn % 2 === 1 || fn === sn) {
        r = await sha256(concat(Uint8Array.of(1), p, r));
        if (fn % 2 === 0) {
          while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
        }
      } else {
        r = await sha256(concat(Uint8Array.of(1), r, p));
      }
      fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
    }
    return sn === 0 ? r : null;
  }

  // c2sp.org/signed-note: "<name>+<hex key id>+<base64(0x01 || key)>".
  async function parseVkey(vkey) {
    const parts = vkey.trim().split("+");
    if (parts.length < 3) throw new Error("malformed verifier key");
    const name = parts[0], id = parts[1], raw = b64(parts.slice(2).join("+"));
    if (raw.length !== 33 || raw[0] !== 1) throw new Error("not an Ed25519 verifier key");
    const pub = raw.slice(1);
    const kid = (await sha256(concat(enc.encode(name + "\n"), Uint8Array.of(1), pub))).slice(0, 4);
    if (hex(kid) !== id) throw new Error("verifier key id does not match its name and key");
    const key = await crypto.subtle.importKey("raw", pub, { name: "Ed25519" }, false, ["verify"]);
    return { name, kid, key };
  }

  // A signed checkpoint: its text lines, checked against the verifier (true when signed).
  async function openCheckpoint(note, verifier) {
    const split = note.lastIndexOf("\n\n");
    if (split < 0 || !note.endsWith("\n")) throw new Error("checkpoint has no signature block");
    const text = note.slice(0, split + 1);
    const lines = note.slice(split + 2, -1).split("\n");
    let signed = false;
    for (const line of lines) {
      if (!line.startsWith(DASH)) throw new Error("malformed signature line");
      const [name, sig] = line.slice(DASH.length).split(" ");
      const raw = b64(sig);
      if (name !== verifier.name || !same(raw.slice(0, 4), verifier.kid)) continue;
      const ok = await crypto.subtle.verify({ name: "Ed25519" }, verifier.key, raw.slice(4),
                                            enc.encode(text));
      if (!ok) throw new Error("the checkpoint's signature does not verify");
      signed = true;
    }
    const body = text.split("\n");
    return { signed, origin: body[0], size: Number(body[1]), root: b64(body[2]) };
  }

  async function fetchText(url) {
    const response = await fetch(url, { credentials: "omit", cache: "no-store" });
    if (!response.ok) throw new Error(url + ": HTTP " + response.status);
    return response.text();
  }

  async function check() {
    if (!window.crypto || !crypto.subtle) {
      finish(false, "此浏览器环境无 Web Crypto（须经 https 或 localhost 访问） " +
                    "Web Crypto is unavailable here (serve the console over https)");
      return;
    }
    const data = JSON.parse(document.getElementById("proof-data").textContent);
    const leafHash = await sha256(concat(Uint8Array.of(0), b64(data.leaf)));
    step(true, "叶哈希 leaf hash " + hex(leafHash).slice(0, 16) + "\u2026");
    const root = await rootFromPath(data.index, data.tree_size, leafHash, data.inclusion.map(b64));
    if (root === null) { step(false, "包含路径格式错误 malformed inclusion path"); finish(false, "\u2717 验证失败 Not verified"); return; }
    step(true, "由 " + data.inclusion.length + " 个兄弟节点算得根 computed root " + hex(root).slice(0, 16) + "\u2026");
    const verifier = await parseVkey(await fetchText("/v1/audit/key"));
    step(true, "公布的日志公钥 published log key " + verifier.name + " (" + hex(verifier.kid) + ")");
    const cp = await openCheckpoint(data.checkpoint, verifier);
    step(cp.signed, cp.signed ? "检查点签名有效 checkpoint signature valid (Ed25519)"
                              : "检查点未由公布的公钥签名 checkpoint not signed by the published key");
    const sizeOk = cp.size === data.tree_size;
    step(sizeOk, "检查点树大小 checkpoint tree size " + cp.size);
    const rootOk = same(cp.root, root);
    step(rootOk, rootOk ? "根与检查点一致 root matches the signed checkpoint"
                        : "根与检查点不一致 root differs from the signed checkpoint");
    const latest = await openCheckpoint(await fetchText("/v1/audit/checkpoint"), verifier);
    let latestOk = latest.signed;
    if (latest.size === data.tree_size) latestOk = latestOk && same(latest.root, root);
    step(latestOk, "当前公布的检查点 published checkpoint: size " + latest.size +
         (latest.signed ? ", 签名有效 signed" : ", 签名无效 not signed") +
         (latest.size === data.tree_size ? (same(latest.root, root) ? ", 同根 same root" : ", 根不同 ROOT DIFFERS") : ""));
    const ok = cp.signed && sizeOk && rootOk && latestOk;
    finish(ok, ok ? "\u2713 已验证：条目 " + data.index + " 包含在签名的日志中 (verified in this browser)"
                  : "\u2717 验证失败 Not verified");
  }

  check().catch((err) => { step(false, String(err && err.message || err)); finish(false, "\u2717 验证失败 Not verified: " + err); });
})();
