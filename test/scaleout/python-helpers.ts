// What the scaleout tests share: the Python interpreter that has torch.

/** $DIGPT_PYTHON, else Debian's python3 with python3-torch (the `python3` first on PATH may be another one). */
export const PYTHON = process.env['DIGPT_PYTHON'] ?? '/usr/bin/python3';
