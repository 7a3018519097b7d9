#!/usr/bin/env node
// The `imagine` bin: registers tsx's ESM loader so the TypeScript entry point runs without a build step.
import { register } from 'tsx/esm/api';

register();
await import('./main.ts');
