/**
 * Checks API answers against `docs/openapi.yaml`: the path and method are
 * documented, the status is one of the operation's, and the JSON body fits
 * the schema (the subset the file uses: type, nullable, enum, required,
 * properties, additionalProperties, items, minimum, $ref).
 */
import { parse } from "yaml";

const FILE = new URL("../../docs/openapi.yaml", import.meta.url);

// deno-lint-ignore no-explicit-any
type Node = any;

/** The OpenAPI document and a checker of answers. */
export class OpenApiSpec {
  readonly #doc: Node;
  readonly #paths: { template: string; re: RegExp; params: number }[];

  constructor() {
    this.#doc = parse(Deno.readTextFileSync(FILE));
    this.#paths = Object.keys(this.#doc.paths).map((template) => ({
      template,
      re: new RegExp(`^${template.replace(/\{[a-z_]+\}/g, "[^/]+")}$`),
      params: (template.match(/\{/g) ?? []).length,
    })).sort((a, b) => a.params - b.params);
  }

  /** Problems of an answer to `method path` (none: it fits the document). */
  problems(method: string, path: string, status: number, body: unknown): string[] {
    const where = `${method} ${path} ${status}`;
    const out: string[] = [];
    if ((this.#doc["x-common-errors"] ?? []).includes(String(status))) {
      this.#check(this.#doc.components.schemas.Error, body, `${where} body`, out);
      return out;
    }
    const found = this.#paths.find((p) => p.re.test(new URL(path, "http://x").pathname));
    if (!found) return [`${where}: path not documented`];
    const operation = this.#doc.paths[found.template][method.toLowerCase()];
    if (!operation) return [`${where}: method not documented for ${found.template}`];
    let response = operation.responses[String(status)];
    if (!response) return [`${where}: status not documented for ${found.template}`];
    response = this.#deref(response);
    const schema = response.content?.["application/json"]?.schema;
    if (!schema) return [];
    this.#check(schema, body, `${where} body`, out);
    return out;
  }

  #deref(node: Node): Node {
    while (node && node.$ref) {
      node = (node.$ref as string).slice(2).split("/").reduce(
        (n: Node, k: string) => n[k],
        this.#doc,
      );
    }
    return node;
  }

  #check(schemaNode: Node, value: unknown, at: string, out: string[]): void {
    const s = this.#deref(schemaNode);
    if (value === null) {
      if (!s.nullable && s.type !== undefined) out.push(`${at}: null where ${s.type} is expected`);
      return;
    }
    if (s.enum && !s.enum.includes(value)) {
      out.push(`${at}: ${JSON.stringify(value)} not one of ${s.enum.join(", ")}`);
    }
    switch (s.type) {
      case undefined:
        return;
      case "integer":
        if (!Number.isInteger(value)) out.push(`${at}: ${JSON.stringify(value)} is not an integer`);
        else if (s.minimum !== undefined && (value as number) < s.minimum) {
          out.push(`${at}: below ${s.minimum}`);
        }
        return;
      case "number":
      case "string":
      case "boolean": {
        const actual: string = typeof value;
        if (actual !== s.type) out.push(`${at}: ${JSON.stringify(value)} is not a ${s.type}`);
        return;
      }
      case "array":
        if (!Array.isArray(value)) out.push(`${at}: not an array`);
        else value.forEach((v, i) => this.#check(s.items, v, `${at}[${i}]`, out));
        return;
      case "object": {
        if (typeof value !== "object" || Array.isArray(value)) {
          out.push(`${at}: not an object`);
          return;
        }
        const obj = value as Record<string, unknown>;
        for (const r of s.required ?? []) if (!(r in obj)) out.push(`${at}: lacks ${r}`);
        for (const [k, v] of Object.entries(obj)) {
          const p = s.properties?.[k];
          if (p) this.#check(p, v, `${at}.${k}`, out);
          else if (s.additionalProperties === false) out.push(`${at}: unexpected ${k}`);
          else if (typeof s.additionalProperties === "object") {
            this.#check(s.additionalProperties, v, `${at}.${k}`, out);
          }
        }
        return;
      }
      default:
        out.push(`${at}: schema type ${s.type} not supported by this checker`);
    }
  }
}
