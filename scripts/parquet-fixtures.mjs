// Writes the Parquet fixtures of align/pairs' tests (testdata/pairs/hub)
// with an independent writer (hyparquet-writer), beside their JSON Lines
// equivalents: TRL's standard and conversational preference columns,
// Anthropic's HH-RLHF text format, and a file with a bad row.
//
//   npm install --prefix ~/.cache/align-parquet-node hyparquet-writer@0.17.0
//   node scripts/parquet-fixtures.mjs ~/.cache/align-parquet-node
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [nodeDir] = process.argv.slice(2);
if (!nodeDir) {
  console.error("usage: node scripts/parquet-fixtures.mjs NODE_PREFIX");
  process.exit(2);
}
const { parquetWriteFile } = await import(
  pathToFileURL(path.join(nodeDir, "node_modules", "hyparquet-writer", "src", "node.js")).href
);
const out = path.join(path.dirname(new URL(import.meta.url).pathname), "..", "testdata", "pairs", "hub");
fs.mkdirSync(out, { recursive: true });

const jsonl = (name, rows) =>
  fs.writeFileSync(path.join(out, name), rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
const columns = (rows, types = {}) =>
  Object.keys(rows[0]).map((name) => ({ name, data: rows.map((r) => r[name] ?? null), ...(types[name] ? { type: types[name] } : {}) }));
const write = (name, rows, types) => parquetWriteFile({ filename: path.join(out, name), columnData: columns(rows, types) });

const user = (content) => ({ role: "user", content });
const asst = (content) => ({ role: "assistant", content });

// TRL's standard (plain text) form, with an extra numeric column
const standard = [
  { prompt: "Is Berserk finished?", chosen: "Not yet: volume 42 is out.", rejected: "Yes.", score_chosen: 8.5 },
  { prompt: "Who wrote Naruto?", chosen: "Masashi Kishimoto.", rejected: "Eiichiro Oda.", score_chosen: 9 },
  { prompt: "『葬送のフリーレン』は何巻まで？", chosen: "14巻まで刊行されています。🙂", rejected: "わかりません。", score_chosen: 7.25 },
];
write("trl-standard.parquet", standard, { prompt: "STRING", chosen: "STRING", rejected: "STRING", score_chosen: "DOUBLE" });
jsonl("trl-standard.jsonl", standard);

// TRL's conversational form: lists of {role, content} structs
const conversational = [
  { prompt: [{ role: "system", content: "You are a manga bookstore assistant." }, user("Is Berserk finished?")], chosen: [asst("Not yet.")], rejected: [asst("Yes.")] },
  { prompt: [user("Do you have Yotsuba&!?"), asst("Yes."), user("For a 7-year-old?")], chosen: [asst("It is rated for all ages.")], rejected: [asst("No idea.")] },
];
write("trl-conversational.parquet", conversational);
jsonl("trl-conversational.jsonl", conversational);

// Anthropic's HH-RLHF text format: whole conversations in chosen and rejected
const hh = [
  { chosen: "\n\nHuman: Is Berserk finished?\n\nAssistant: Not yet: volume 42 is out.", rejected: "\n\nHuman: Is Berserk finished?\n\nAssistant: Yes." },
  {
    chosen: "\n\nHuman: Do you have Pluto?\n\nAssistant: Yes, all 8 volumes.\n\nHuman: Is it violent?\n\nAssistant: It is rated for older teens.",
    rejected: "\n\nHuman: Do you have Pluto?\n\nAssistant: Yes, all 8 volumes.\n\nHuman: Is it violent?\n\nAssistant: Whatever.",
  },
];
write("hh.parquet", hh, { chosen: "STRING", rejected: "STRING" });
jsonl("hh.jsonl", hh);
// what align reads the HH rows as
jsonl("hh-messages.jsonl", [
  { prompt: [user("Is Berserk finished?")], chosen: [asst("Not yet: volume 42 is out.")], rejected: [asst("Yes.")] },
  {
    prompt: [user("Do you have Pluto?"), asst("Yes, all 8 volumes."), user("Is it violent?")],
    chosen: [asst("It is rated for older teens.")],
    rejected: [asst("Whatever.")],
  },
]);

// row 3 has no rejected response
write("bad-row.parquet", [...standard.slice(0, 2).map(({ score_chosen, ...r }) => r), { prompt: "Is Vagabond finished?", chosen: "It is on hiatus.", rejected: null }],
  { prompt: "STRING", chosen: "STRING", rejected: "STRING" });
console.error(`wrote ${fs.readdirSync(out).length} files to ${out}`);
