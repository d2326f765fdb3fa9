// Entry point of Squall's Node.js runtime (nodejs18.x / nodejs20.x / nodejs22.x):
//
//     node /var/runtime/bootstrap.mjs      (cwd = the code directory)
//
// with Lambda's environment (AWS_LAMBDA_RUNTIME_API, _HANDLER, LAMBDA_TASK_ROOT, ...).
// Standard library only. The runtime itself lives in index.mjs (so that "Require stack"
// lines in module-not-found errors name /var/runtime/index.mjs, as on Lambda).
import { start } from './index.mjs';

start();
