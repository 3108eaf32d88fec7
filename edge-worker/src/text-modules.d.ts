// A .lua file imported by the worker is its text (wrangler's Text module rule).
declare module "*.lua" {
  const text: string;
  export default text;
}
