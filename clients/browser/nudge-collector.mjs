// The collector as an ES module: `import NudgeCollector from "./nudge-collector.mjs"`.
// nudge-collector.js is written to run as a module too (strict, no `this`
// at the top), so this file only re-exports the global it defines.
import "./nudge-collector.js";

const NudgeCollector = globalThis.NudgeCollector;
export { NudgeCollector };
export default NudgeCollector;
