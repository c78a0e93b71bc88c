// Vite's `?raw` imports: a file's text, used by test/integration/docs-examples.test.ts.
declare module "*.md?raw" {
  const text: string;
  export default text;
}
