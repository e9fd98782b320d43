// One GET through keyhole with Node's global fetch(), as a sandboxed program
// would make it: the proxy and CA come from the environment that
// `keyhole env` printed, and the placeholders from its variables.
//
//     node fetch.mjs URL 'Header-Name=template'...
//
// Templates name environment variables as $NAME. Prints one JSON object:
// {"mode", "node", "status", "body"}.
//
// How fetch() finds the proxy depends on the Node version:
// - Node >= 24.0.0 and 22.21.0+ honour NODE_USE_ENV_PROXY=1 (which keyhole
//   env prints): fetch() reads HTTPS_PROXY by itself ("NODE_USE_ENV_PROXY").
// - Older Nodes ignore it, so we install undici's EnvHttpProxyAgent (npm
//   package, from KEYHOLE_TEST_NODE_MODULES or ./node_modules) as the global
//   dispatcher, which the built-in fetch() then uses ("EnvHttpProxyAgent").
// NODE_EXTRA_CA_CERTS (also from keyhole env) makes both trust keyhole's CA.
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

function honoursEnvProxy() {
  const [major, minor] = process.versions.node.split(".").map(Number);
  return major >= 24 || (major === 22 && minor >= 21);
}

const [url, ...templates] = process.argv.slice(2);
const headers = {};
for (const t of templates) {
  const i = t.indexOf("=");
  headers[t.slice(0, i)] = t
    .slice(i + 1)
    .replace(/\$([A-Za-z_][A-Za-z0-9_]*)/g, (_, name) => {
      if (!(name in process.env)) throw new Error(`${name} is not set`);
      return process.env[name];
    });
}

let mode;
if (honoursEnvProxy() && process.env.NODE_USE_ENV_PROXY === "1") {
  mode = "NODE_USE_ENV_PROXY";
} else {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const modules = process.env.KEYHOLE_TEST_NODE_MODULES || path.join(here, "node_modules");
  const require = createRequire(path.join(modules, "noop.js"));
  const { EnvHttpProxyAgent, setGlobalDispatcher } = require("undici");
  setGlobalDispatcher(new EnvHttpProxyAgent());
  mode = "EnvHttpProxyAgent";
}

const res = await fetch(url, { headers });
const body = await res.text();
console.log(JSON.stringify({ mode, node: process.versions.node, status: res.status, body }));
