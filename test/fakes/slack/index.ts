/** Local fake Slack for tests and `npm run bench:chat`: the Web API server and the signed-request sender. */

export * from './remote.ts';
export * from './sender.ts';
export * from './server.ts';
