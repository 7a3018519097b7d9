export {
  CATALOG,
  type CatalogEntry,
  type CatalogFile,
  checkAgainstEntry,
  downloadCatalogEntry,
  findCatalogEntry,
  sizeMatches,
  unknownEntry,
} from './catalog.ts';
export {
  DOWNLOAD_STATE_FILE,
  type DownloadOptions,
  type DownloadResult,
  downloadModel,
  hashFile,
  type InstalledFile,
  type InstallManifest,
  MANIFEST_FILE,
  modelFolderName,
  REQUIRED_MODEL_FILES,
  readManifest,
  selectModelFiles,
} from './download.ts';
export { DownloadError, type DownloadFailure } from './errors.ts';
export {
  type FetchLike,
  fetchRepoInfo,
  type HubFile,
  type HubRepoInfo,
  resolveUrl,
  revisionUrl,
} from './hub.ts';
export { type InstalledModel, listModels } from './installed.ts';
export {
  type DownloadProgress,
  formatBytes,
  formatDuration,
  formatProgressBar,
  type ProgressBarOptions,
  SpeedMeter,
} from './progress.ts';
