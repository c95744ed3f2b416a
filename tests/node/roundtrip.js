#!/usr/bin/env node
// The Node service's round trip, run by tests/node/test_node_roundtrip.py with the official driver:
// read one document by _id, decrypt its personal fields (each checked against its place), print the
// document as relaxed Extended JSON, then insert one document whose personal fields it seals itself
// under a user's data key (by key alt name). The encryption code is docs/security.md's recipe
// (astro_csfle.js), passed as --recipe, so the test runs what the page shows.
//
//   ASTRO_DB_ENCRYPTION_KEY=<base64 of 32 bytes> node roundtrip.js --recipe astro_csfle.js \
//     --uri mongodb://host/db --key-vault db.__keyVault [--provider local:<key id>] \
//     --read users --id '{"$oid": "..."}' --fields email,name [--owner userId] \
//     [--write planetaryInsights --document '{...}' --seal summary --user <user id hex>]
//
// The key comes from the environment, never the command line. Exit 0: done; 2: an error, on stderr.
"use strict";
const path = require("path");
const { parseArgs } = require("util");
const { BSON: { EJSON }, MongoClient } = require("mongodb");

const { values: opts } = parseArgs({
  options: {
    recipe: { type: "string" }, uri: { type: "string" }, "key-vault": { type: "string" },
    provider: { type: "string" },  // default: the recipe's, local:<key id>
    read: { type: "string" }, id: { type: "string" }, fields: { type: "string", default: "" },
    write: { type: "string" }, document: { type: "string" }, seal: { type: "string", default: "" },
    user: { type: "string" },
    owner: { type: "string" },  // the field naming the read document's owner: its values open only under that owner's key
  },
});
const list = (text) => text.split(",").filter(Boolean);

async function main() {
  for (const name of ["recipe", "uri", "key-vault", "read", "id"]) {
    if (!opts[name]) throw new Error(`--${name} is required`);
  }
  const encryptionKey = process.env.ASTRO_DB_ENCRYPTION_KEY;
  if (!encryptionKey) throw new Error("ASTRO_DB_ENCRYPTION_KEY is not set");
  const recipe = require(path.resolve(opts.recipe));
  const client = new MongoClient(opts.uri, { serverSelectionTimeoutMS: 10000 });
  await client.connect();
  try {
    const encryption = recipe.openClientEncryption(client, {
      encryptionKey, provider: opts.provider, keyVaultNamespace: opts["key-vault"],
    });
    const db = client.db();
    const id = EJSON.parse(opts.id, { relaxed: false });
    const stored = await db.collection(opts.read).findOne({ _id: id });
    if (stored === null) throw new Error(`no document ${opts.id} in ${opts.read}`);
    const read = await recipe.openDocument(encryption, opts.read, stored, list(opts.fields),
                                           opts.owner ? stored[opts.owner] : undefined);
    let written = null;
    if (opts.write) {
      const doc = EJSON.parse(opts.document, { relaxed: false });
      const sealed = await recipe.sealDocument(encryption, opts.write, doc, list(opts.seal), opts.user);
      written = (await db.collection(opts.write).insertOne(sealed)).insertedId;
    }
    process.stdout.write(EJSON.stringify({ read, written }, { relaxed: false }) + "\n");
  } finally {
    await client.close();
  }
}

main().catch((error) => {
  process.stderr.write(`roundtrip.js: ${error && error.message ? error.message : error}\n`);
  process.exit(2);
});
