// The console's static files (src/console/static/**/*.txt), which wrangler bundles as text by default.
declare module "*.txt" {
  const text: string;
  export default text;
}
