import sharp from 'sharp';
import { FakeJobs } from '../bots/fake-jobs.ts';
import { type JobsHarness, jobsContract } from './jobs.contract.ts';

/** A small PNG standing in for an engine's output (the contract checks PNGs, not pixels). */
function png(): Promise<Buffer> {
  return sharp({ create: { width: 2, height: 2, channels: 3, background: { r: 200, g: 40, b: 40 } } })
    .png()
    .toBuffer();
}

/** FakeJobs, its queued jobs run through its test hooks the way a worker would: running, each step, done. */
jobsContract('FakeJobs (test/bots/fake-jobs.ts)', async (limits = {}): Promise<JobsHarness> => {
  const jobs = new FakeJobs({ limits });
  return {
    jobs,
    run: async () => {
      for (const [id, record] of [...jobs.records]) {
        if (record.state.status.state !== 'queued') continue;
        jobs.setRunning(id);
        const total = record.spec.steps;
        for (let step = 1; step <= total; step++) jobs.progress({ jobId: id, step, total });
        const images = await Promise.all(record.spec.prompts.map(() => png()));
        await jobs.complete(id, { grid: await png(), images });
      }
    },
    close: () => jobs.close(),
  };
});
