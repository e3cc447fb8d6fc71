// Entry point of the `digpt` command line (placeholder: the real commands come later).
console.error('digpt: no commands yet');
process.exitCode = 1;
