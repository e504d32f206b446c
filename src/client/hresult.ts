// The client's names for the HRESULTs its BITS-shaped APIs return (stores, selection, jobs).
// The values and the helpers live once in src/status.ts (BitsHResult); this module keeps the
// client's `HResult` name for them.
export {
  BitsHResult as HResult, hresultName, hresultFromWin32, hresultFromHttpStatus, succeeded, type BitsHResultValue as HResultValue,
} from '../status.js';
