// Which SQL the application token may run: one data statement, nothing that changes or reveals the schema.
//
// The SQL is tokenized the way SQLite reads it (comments, string literals, quoted identifiers skipped
// or kept whole), then checked:
//   - exactly one statement (a trailing ";" is allowed, a second statement is not);
//   - it starts with SELECT, INSERT, UPDATE, DELETE, REPLACE, WITH or VALUES — so no CREATE/DROP/ALTER
//     (and so no trigger bodies), PRAGMA, ATTACH/DETACH, VACUUM, REINDEX, ANALYZE, EXPLAIN, BEGIN/COMMIT/
//     ROLLBACK/SAVEPOINT/RELEASE: SQLite allows none of these anywhere but at a statement's start;
//   - no identifier (bare or quoted, schema-qualified or not) naming SQLite's or D1's own objects
//     (`sqlite_*`, `_cf_*`), the table-valued pragma functions (`pragma_*`) or load_extension;
//   - a statement that writes (INSERT/UPDATE/DELETE/REPLACE anywhere in it) never names d1_migrations.
// Anything the tokenizer cannot read (an unterminated string or comment) is refused.

const DATA_VERBS = new Set(["SELECT", "INSERT", "UPDATE", "DELETE", "REPLACE", "WITH", "VALUES"]);
const WRITE_VERBS = new Set(["INSERT", "UPDATE", "DELETE", "REPLACE"]);
const RESERVED_PREFIXES = ["sqlite_", "_cf_", "pragma_"];
const RESERVED_NAMES = new Set(["load_extension"]);
const MIGRATIONS_TABLE = "d1_migrations";

class Unreadable extends Error {}

function isWordChar(ch) {
  return /[A-Za-z0-9_$]/.test(ch) || ch.charCodeAt(0) > 0x7f;
}

// Tokens: {kind: "word" | "quoted" | "string" | "punct", text}. Whitespace and comments are dropped.
export function tokenize(sql) {
  const tokens = [];
  const n = sql.length;
  let i = 0;
  const until = (close, from) => {
    // The end of a quoted run whose closing character is doubled to escape it ('it''s', "a""b").
    let j = from;
    for (;;) {
      const k = sql.indexOf(close, j);
      if (k < 0) throw new Unreadable(`unterminated ${close}`);
      if (close !== "]" && sql[k + 1] === close) {
        j = k + 2;
        continue;
      }
      return k;
    }
  };
  while (i < n) {
    const ch = sql[i];
    if (/\s/.test(ch)) {
      i += 1;
    } else if (ch === "-" && sql[i + 1] === "-") {
      const end = sql.indexOf("\n", i);
      i = end < 0 ? n : end + 1;
    } else if (ch === "/" && sql[i + 1] === "*") {
      const end = sql.indexOf("*/", i + 2);
      if (end < 0) throw new Unreadable("unterminated comment");
      i = end + 2;
    } else if (ch === "'") {
      const end = until("'", i + 1);
      tokens.push({ kind: "string", text: sql.slice(i + 1, end) });
      i = end + 1;
    } else if (ch === '"' || ch === "`" || ch === "[") {
      const close = ch === "[" ? "]" : ch;
      const end = until(close, i + 1);
      tokens.push({ kind: "quoted", text: sql.slice(i + 1, end).replaceAll(close + close, close) });
      i = end + 1;
    } else if (isWordChar(ch)) {
      let j = i + 1;
      while (j < n && isWordChar(sql[j])) j += 1;
      tokens.push({ kind: "word", text: sql.slice(i, j) });
      i = j;
    } else {
      tokens.push({ kind: "punct", text: ch });
      i += 1;
    }
  }
  return tokens;
}

// True when the application token may run `sql`.
export function isDataStatement(sql) {
  let tokens;
  try {
    tokens = tokenize(sql);
  } catch (e) {
    if (e instanceof Unreadable) return false;
    throw e;
  }
  while (tokens.length && tokens[tokens.length - 1].kind === "punct" && tokens[tokens.length - 1].text === ";") {
    tokens.pop();
  }
  if (tokens.length === 0) return false;
  if (tokens.some((t) => t.kind === "punct" && t.text === ";")) return false; // a second statement
  const first = tokens[0];
  if (first.kind !== "word" || !DATA_VERBS.has(first.text.toUpperCase())) return false;
  let writes = false;
  let namesMigrations = false;
  for (const t of tokens) {
    if (t.kind !== "word" && t.kind !== "quoted") continue;
    const name = t.text.toLowerCase();
    if (RESERVED_NAMES.has(name) || RESERVED_PREFIXES.some((p) => name.startsWith(p))) return false;
    if (name === MIGRATIONS_TABLE) namesMigrations = true;
    if (t.kind === "word" && WRITE_VERBS.has(t.text.toUpperCase())) writes = true;
  }
  return !(writes && namesMigrations);
}
