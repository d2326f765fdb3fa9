// Signature Version 4 in the browser: the same signature botocore makes (squall/auth/sigv4.py
// verifies it with botocore's canonical request). WebCrypto (HMAC-SHA256, SHA-256) where the
// page is a secure context (localhost, 127.0.0.1, https); a small SHA-256 in plain JS elsewhere
// (a console reached over plain http at a LAN address has no crypto.subtle).

const encoder = new TextEncoder();
const subtle = globalThis.crypto && globalThis.crypto.subtle;

function bytes(data) {
  if (data == null) return new Uint8Array(0);
  if (typeof data === "string") return encoder.encode(data);
  if (data instanceof Uint8Array) return data;
  return new Uint8Array(data);
}

export function hex(data) {
  return Array.from(bytes(data), (b) => b.toString(16).padStart(2, "0")).join("");
}

// RFC 3986 unreserved characters stay, everything else is %XX (upper case): AWS's URI-encode.
export function awsEncode(text) {
  return encodeURIComponent(text).replace(/[!'()*]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase());
}

// ---- SHA-256 and HMAC in plain JS (the fallback) ----------------------------------------------
const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

function ror(x, n) {
  return (x >>> n) | (x << (32 - n));
}

export function sha256Plain(input) {
  const message = bytes(input);
  const length = message.length;
  const padded = ((length + 9 + 63) >> 6) << 6;
  const buffer = new Uint8Array(padded);
  buffer.set(message);
  buffer[length] = 0x80;
  const view = new DataView(buffer.buffer);
  view.setUint32(padded - 4, (length * 8) >>> 0);
  view.setUint32(padded - 8, Math.floor((length * 8) / 0x100000000));
  const H = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
  const W = new Uint32Array(64);
  for (let offset = 0; offset < padded; offset += 64) {
    for (let i = 0; i < 16; i++) W[i] = view.getUint32(offset + i * 4);
    for (let i = 16; i < 64; i++) {
      const x = W[i - 15], y = W[i - 2];
      const s0 = ror(x, 7) ^ ror(x, 18) ^ (x >>> 3);
      const s1 = ror(y, 17) ^ ror(y, 19) ^ (y >>> 10);
      W[i] = (W[i - 16] + s0 + W[i - 7] + s1) | 0;
    }
    let a = H[0], b = H[1], c = H[2], d = H[3], e = H[4], f = H[5], g = H[6], h = H[7];
    for (let i = 0; i < 64; i++) {
      const t1 = (h + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + W[i]) | 0;
      const t2 = ((ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) | 0;
      h = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
    }
    H[0] += a; H[1] += b; H[2] += c; H[3] += d; H[4] += e; H[5] += f; H[6] += g; H[7] += h;
  }
  const out = new Uint8Array(32);
  const outView = new DataView(out.buffer);
  for (let i = 0; i < 8; i++) outView.setUint32(i * 4, H[i]);
  return out;
}

export function hmacPlain(keyInput, messageInput) {
  let key = bytes(keyInput);
  if (key.length > 64) key = sha256Plain(key);
  const inner = new Uint8Array(64 + bytes(messageInput).length);
  const outer = new Uint8Array(64 + 32);
  for (let i = 0; i < 64; i++) {
    const k = i < key.length ? key[i] : 0;
    inner[i] = k ^ 0x36;
    outer[i] = k ^ 0x5c;
  }
  inner.set(bytes(messageInput), 64);
  outer.set(sha256Plain(inner), 64);
  return sha256Plain(outer);
}

export async function sha256(data) {
  if (subtle) return new Uint8Array(await subtle.digest("SHA-256", bytes(data)));
  return sha256Plain(data);
}

export async function hmac(key, message) {
  if (subtle) {
    const imported = await subtle.importKey("raw", bytes(key), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    return new Uint8Array(await subtle.sign("HMAC", imported, bytes(message)));
  }
  return hmacPlain(key, message);
}

// ---- the signature -------------------------------------------------------------------------------
export function amzDate(date) {
  return date.toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");
}

// The canonical URI of a path already sent URI-encoded (each segment awsEncode'd once): botocore
// quotes it again (quote(path, safe="/~")), as SigV4 asks of every service but S3.
export function canonicalUri(path) {
  return (path || "/").split("/").map(awsEncode).join("/");
}

export function canonicalQuery(pairs) {
  return pairs
    .map(([k, v]) => [String(k), String(v)])
    .sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : x[1] < y[1] ? -1 : x[1] > y[1] ? 1 : 0))
    .map(([k, v]) => `${awsEncode(k)}=${awsEncode(v)}`)
    .join("&");
}

/**
 * The headers that sign a request: X-Amz-Date, Authorization (and X-Amz-Security-Token).
 * method, path (URI-encoded, no query), query ([[name, value]] decoded), host (as the browser
 * sends it: location.host), body (string/bytes/null), service, region,
 * credentials {accessKeyId, secretAccessKey, sessionToken}, now (a Date).
 */
export async function signatureHeaders({ method, path, query = [], host, body = null, service, region, credentials, now }) {
  const stamp = amzDate(now || new Date());
  const day = stamp.slice(0, 8);
  const headers = [["host", host], ["x-amz-date", stamp]];
  if (credentials.sessionToken) headers.push(["x-amz-security-token", credentials.sessionToken]);
  headers.sort((a, b) => (a[0] < b[0] ? -1 : 1));
  const signedHeaders = headers.map(([name]) => name).join(";");
  const canonicalHeaders = headers.map(([name, value]) => `${name}:${String(value).trim().split(/\s+/).join(" ")}\n`).join("");
  const payloadHash = hex(await sha256(body == null ? "" : body));
  const canonicalRequest = [method.toUpperCase(), canonicalUri(path), canonicalQuery(query), canonicalHeaders,
    signedHeaders, payloadHash].join("\n");
  const scope = `${day}/${region}/${service}/aws4_request`;
  const stringToSign = ["AWS4-HMAC-SHA256", stamp, scope, hex(await sha256(canonicalRequest))].join("\n");
  let key = await hmac("AWS4" + credentials.secretAccessKey, day);
  for (const part of [region, service, "aws4_request"]) key = await hmac(key, part);
  const signature = hex(await hmac(key, stringToSign));
  const result = {
    "X-Amz-Date": stamp,
    Authorization: `AWS4-HMAC-SHA256 Credential=${credentials.accessKeyId}/${scope}, SignedHeaders=${signedHeaders}, Signature=${signature}`,
  };
  if (credentials.sessionToken) result["X-Amz-Security-Token"] = credentials.sessionToken;
  return result;
}
