/**
 * `.wasm` imports are compiled modules in workerd (wrangler's CompiledWasm rule), instantiated by hand.
 * The codec packages ship their own `.wasm.d.ts` describing the instance's exports, which is not what the
 * import gives; these exact declarations take precedence over them.
 */
declare module "*.wasm" {
  const module: WebAssembly.Module;
  export default module;
}
declare module "@jsquash/png/codec/pkg/squoosh_png_bg.wasm" {
  const module: WebAssembly.Module;
  export default module;
}
declare module "@jsquash/oxipng/codec/pkg/squoosh_oxipng_bg.wasm" {
  const module: WebAssembly.Module;
  export default module;
}
declare module "@jsquash/resize/lib/resize/pkg/squoosh_resize_bg.wasm" {
  const module: WebAssembly.Module;
  export default module;
}
