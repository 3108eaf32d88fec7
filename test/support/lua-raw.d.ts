// A .lua file imported with ?raw is its text (vite's raw import): the tests
// read Lua policy fixtures this way in Node and in workerd alike.
declare module "*.lua?raw" {
  const text: string;
  export default text;
}
