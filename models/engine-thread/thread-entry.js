// Worker-thread bootstrap: the thread needs the TypeScript loader too (tests run under vitest, not tsx).
import { register } from 'tsx/esm/api';

register();
await import('./thread-main.ts');
