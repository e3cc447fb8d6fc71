// Teachers that ship with the workbench (see README.md beside this file for how each was made).
import { resolve } from 'node:path';

/** A small supervised ViT (digpt-micro-32's encoder + head) fine-tuned from scratch on the built-in sample. */
export const BUILTIN_TEACHER = resolve(import.meta.dirname, 'fashion-vit-micro.safetensors');
