// The console's own script and stylesheet (src/console/static/*.txt), bundled as text by wrangler's default rule
// for .txt files; uPlot's files are declared by wrangler types from the rules in wrangler.jsonc.
declare module "*.txt" {
  const text: string;
  export default text;
}
