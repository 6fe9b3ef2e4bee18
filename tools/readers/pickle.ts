import { CarvqError } from "../errors.ts";
import { printable } from "./modelFile.ts";

/**
 * A restricted reader for the pickles PyTorch writes for a tensor state dict (torch.save of a dict
 * of tensors). It is not an unpickler: it runs no code, imports nothing and calls nothing. It knows
 * the opcodes that build plain data (None, booleans, numbers, strings, bytes, tuples, lists, dicts,
 * the memo) and a short list of globals, each of which it replaces by a data value of its own:
 * collections.OrderedDict becomes a Map, torch._utils._rebuild_tensor_v2 a tensor reference, a
 * storage type a dtype name. Any other global, any opcode that would create an arbitrary object
 * (INST, OBJ, NEWOBJ, EXT*) and REDUCE or BUILD on anything but those are refused with one line
 * naming the opcode or global and where it is, before anything else happens.
 */

/** A storage a tensor views: from the persistent id ('storage', type, key, location, numel). */
export interface PickledStorage {
  readonly kind: "storage";
  /** The element type of the storage type (torch.FloatStorage: "F32"), or undefined for an untyped storage. */
  readonly dtype: string | undefined;
  readonly key: string;
  readonly numel: number;
}

/** A tensor as _rebuild_tensor_v2 describes it: a view of a storage. */
export interface PickledTensor {
  readonly kind: "tensor";
  readonly storage: PickledStorage;
  /** In elements. */
  readonly storageOffset: number;
  readonly shape: readonly number[];
  readonly stride: readonly number[];
  /** Set by _rebuild_tensor_v3, which states the dtype apart from the storage. */
  readonly dtype?: string;
}

/** A global the reader knows, kept as a marker: callables are applied by REDUCE, the others are values. */
interface KnownGlobal {
  readonly kind: "global";
  readonly name: string;
}

/** The values a state-dict pickle builds. */
export type PickleValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | PickleValue[]
  | Map<PickleValue, PickleValue>
  | PickledStorage
  | PickledTensor
  | KnownGlobal;

/** PyTorch's storage types, by the element type of their data. */
export const STORAGE_DTYPES: Readonly<Record<string, string>> = {
  "torch.FloatStorage": "F32",
  "torch.HalfStorage": "F16",
  "torch.BFloat16Storage": "BF16",
  "torch.DoubleStorage": "F64",
  "torch.LongStorage": "I64",
  "torch.IntStorage": "I32",
  "torch.ShortStorage": "I16",
  "torch.CharStorage": "I8",
  "torch.ByteStorage": "U8",
  "torch.BoolStorage": "BOOL",
};

/** torch dtypes, as _rebuild_tensor_v3 passes them. */
const TORCH_DTYPES: Readonly<Record<string, string>> = {
  "torch.float32": "F32",
  "torch.float": "F32",
  "torch.float16": "F16",
  "torch.half": "F16",
  "torch.bfloat16": "BF16",
  "torch.float64": "F64",
  "torch.double": "F64",
  "torch.int64": "I64",
  "torch.long": "I64",
  "torch.int32": "I32",
  "torch.int": "I32",
  "torch.int16": "I16",
  "torch.int8": "I8",
  "torch.uint8": "U8",
  "torch.bool": "BOOL",
};

/** Callables REDUCE may apply, each replaced by a data constructor below. */
const CALLABLES = new Set([
  "collections.OrderedDict",
  "torch._utils._rebuild_tensor_v2",
  "torch._utils._rebuild_tensor_v3",
  "torch._utils._rebuild_parameter",
  "torch._utils._rebuild_parameter_with_state",
  "torch._tensor._rebuild_from_type_v2",
]);

/** Globals that only stand for a type: the tensor classes _rebuild_from_type_v2 names, and the untyped storage. */
const TYPE_GLOBALS = new Set([
  "torch.Tensor",
  "torch._tensor.Tensor",
  "torch.nn.parameter.Parameter",
  "torch.UntypedStorage",
  "torch.storage.UntypedStorage",
]);

function isAllowedGlobal(name: string): boolean {
  return CALLABLES.has(name) || TYPE_GLOBALS.has(name) || name in STORAGE_DTYPES || name in TORCH_DTYPES;
}

/** Pickle opcode names, for messages (protocols 0 to 5). */
const OPCODE_NAMES: Readonly<Record<number, string>> = {
  40: "MARK",
  46: "STOP",
  48: "POP",
  49: "POP_MARK",
  50: "DUP",
  70: "FLOAT",
  73: "INT",
  74: "BININT",
  75: "BININT1",
  76: "LONG",
  77: "BININT2",
  78: "NONE",
  80: "PERSID",
  81: "BINPERSID",
  82: "REDUCE",
  83: "STRING",
  84: "BINSTRING",
  85: "SHORT_BINSTRING",
  86: "UNICODE",
  88: "BINUNICODE",
  97: "APPEND",
  98: "BUILD",
  99: "GLOBAL",
  100: "DICT",
  125: "EMPTY_DICT",
  101: "APPENDS",
  103: "GET",
  104: "BINGET",
  105: "INST",
  106: "LONG_BINGET",
  108: "LIST",
  93: "EMPTY_LIST",
  111: "OBJ",
  112: "PUT",
  113: "BINPUT",
  114: "LONG_BINPUT",
  115: "SETITEM",
  116: "TUPLE",
  41: "EMPTY_TUPLE",
  117: "SETITEMS",
  71: "BINFLOAT",
  128: "PROTO",
  129: "NEWOBJ",
  130: "EXT1",
  131: "EXT2",
  132: "EXT4",
  133: "TUPLE1",
  134: "TUPLE2",
  135: "TUPLE3",
  136: "NEWTRUE",
  137: "NEWFALSE",
  138: "LONG1",
  139: "LONG4",
  66: "BINBYTES",
  67: "SHORT_BINBYTES",
  140: "SHORT_BINUNICODE",
  141: "BINUNICODE8",
  142: "BINBYTES8",
  143: "EMPTY_SET",
  144: "ADDITEMS",
  145: "FROZENSET",
  146: "NEWOBJ_EX",
  147: "STACK_GLOBAL",
  148: "MEMOIZE",
  149: "FRAME",
  150: "BYTEARRAY8",
  151: "NEXT_BUFFER",
  152: "READONLY_BUFFER",
};

/** Why the opcodes that create arbitrary objects are refused, by name. */
const REFUSED_OPCODES = new Set(["INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "EXT1", "EXT2", "EXT4", "PERSID", "NEXT_BUFFER", "READONLY_BUFFER"]);

/** Bounds on what a pickle may build, far above any state dict's needs. */
const MAX_STACK = 1 << 20;
const MAX_MEMO = 1 << 22;

const MARK = Symbol("mark");
type StackItem = PickleValue | typeof MARK;

export interface PickleReadOptions {
  /** Names the pickle in messages ("model.bin: pickle 'archive/data.pkl'"). */
  readonly where: string;
  /** Turns a persistent id (BINPERSID) into a value: PyTorch's storages. */
  readonly persistentLoad: (pid: PickleValue, at: number) => PickleValue;
}

/** Reads the one object a pickle holds, running nothing. */
export function readPickle(bytes: Uint8Array, options: PickleReadOptions): PickleValue {
  return new PickleMachine(bytes, options).run();
}

class PickleMachine {
  private position = 0;
  private opcodeAt = 0;
  private readonly stack: StackItem[] = [];
  private readonly marks: number[] = [];
  private readonly memo = new Map<number, PickleValue>();
  private readonly view: DataView;

  constructor(
    private readonly bytes: Uint8Array,
    private readonly options: PickleReadOptions,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  }

  private fail(what: string): never {
    throw new CarvqError(`${this.options.where} at byte ${this.opcodeAt}: ${what}`);
  }

  run(): PickleValue {
    while (this.position < this.bytes.length) {
      this.opcodeAt = this.position;
      const opcode = this.bytes[this.position++];
      if (this.step(opcode)) {
        if (this.stack.length !== 1 || this.marks.length !== 0)
          this.fail(`STOP with ${this.stack.length} values on the stack; the pickle is malformed`);
        return this.pop();
      }
      if (this.stack.length > MAX_STACK) this.fail(`stack of more than ${MAX_STACK} values; refusing`);
    }
    this.fail("the pickle ends without STOP; it is truncated");
  }

  /** Executes one opcode; true at STOP. */
  private step(opcode: number): boolean {
    const name = OPCODE_NAMES[opcode];
    if (name === undefined) this.fail(`opcode 0x${opcode.toString(16).padStart(2, "0")} is not a pickle opcode; the pickle is damaged`);
    if (REFUSED_OPCODES.has(name))
      this.fail(
        `opcode ${name} (0x${opcode.toString(16)}) would construct an arbitrary object; a tensor state dict does not use it, so the pickle is refused (nothing was run)`,
      );
    switch (name) {
      case "PROTO": {
        const version = this.u8();
        if (version > 5) this.fail(`pickle protocol ${version}; expected 0 to 5`);
        return false;
      }
      case "FRAME":
        this.take(8);
        return false;
      case "STOP":
        return true;
      case "MARK":
        this.marks.push(this.stack.length);
        return false;
      case "POP":
        this.pop();
        return false;
      case "POP_MARK":
        this.popMark();
        return false;
      case "DUP":
        this.push(this.top());
        return false;
      case "NONE":
        return this.push(null);
      case "NEWTRUE":
        return this.push(true);
      case "NEWFALSE":
        return this.push(false);
      case "BININT":
        return this.push(this.view.getInt32(this.advance(4), true));
      case "BININT1":
        return this.push(this.u8());
      case "BININT2":
        return this.push(this.view.getUint16(this.advance(2), true));
      case "LONG1":
        return this.push(this.long(this.u8()));
      case "LONG4":
        return this.push(this.long(this.u32()));
      case "INT":
        return this.push(this.textInt(this.line()));
      case "LONG":
        return this.push(this.textInt(this.line().replace(/L$/, "")));
      case "FLOAT":
        return this.push(Number(this.line()));
      case "BINFLOAT":
        return this.push(this.view.getFloat64(this.advance(8), false));
      case "BINUNICODE":
        return this.push(this.utf8(this.u32()));
      case "SHORT_BINUNICODE":
        return this.push(this.utf8(this.u8()));
      case "BINUNICODE8":
        return this.push(this.utf8(this.u64()));
      case "BINSTRING":
        return this.push(this.latin1(this.u32()));
      case "SHORT_BINSTRING":
        return this.push(this.latin1(this.u8()));
      case "STRING":
      case "UNICODE":
        return this.push(this.line().replace(/^'(.*)'$/, "$1"));
      case "BINBYTES":
        return this.push(this.take(this.u32()).slice());
      case "SHORT_BINBYTES":
        return this.push(this.take(this.u8()).slice());
      case "BINBYTES8":
      case "BYTEARRAY8":
        return this.push(this.take(this.u64()).slice());
      case "EMPTY_TUPLE":
      case "EMPTY_LIST":
      case "EMPTY_SET":
        return this.push([]);
      case "EMPTY_DICT":
        return this.push(new Map());
      case "TUPLE":
      case "LIST":
      case "FROZENSET":
        return this.push(this.popMark());
      case "TUPLE1":
        return this.push([this.pop()]);
      case "TUPLE2": {
        const b = this.pop();
        return this.push([this.pop(), b]);
      }
      case "TUPLE3": {
        const c = this.pop();
        const b = this.pop();
        return this.push([this.pop(), b, c]);
      }
      case "DICT":
        return this.push(this.pairs(new Map(), this.popMark()));
      case "APPEND": {
        const value = this.pop();
        this.list(this.top()).push(value);
        return false;
      }
      case "APPENDS":
      case "ADDITEMS": {
        const items = this.popMark();
        this.list(this.top()).push(...items);
        return false;
      }
      case "SETITEM": {
        const value = this.pop();
        const key = this.pop();
        this.dict(this.top()).set(key, value);
        return false;
      }
      case "SETITEMS": {
        const items = this.popMark();
        this.pairs(this.dict(this.top()), items);
        return false;
      }
      case "GLOBAL": {
        const module = this.line();
        return this.push(this.global(`${module}.${this.line()}`));
      }
      case "STACK_GLOBAL": {
        const qualified = this.pop();
        const module = this.pop();
        if (typeof module !== "string" || typeof qualified !== "string") this.fail("STACK_GLOBAL on values that are not strings");
        return this.push(this.global(`${module}.${qualified}`));
      }
      case "REDUCE": {
        const args = this.pop();
        const callable = this.pop();
        return this.push(this.reduce(callable, args));
      }
      case "BUILD": {
        const state = this.pop();
        this.build(this.top(), state);
        return false;
      }
      case "BINPERSID":
        return this.push(this.options.persistentLoad(this.pop(), this.opcodeAt));
      case "PUT":
        return this.put(Number(this.line()));
      case "BINPUT":
        return this.put(this.u8());
      case "LONG_BINPUT":
        return this.put(this.u32());
      case "MEMOIZE":
        return this.put(this.memo.size);
      case "GET":
        return this.push(this.get(Number(this.line())));
      case "BINGET":
        return this.push(this.get(this.u8()));
      case "LONG_BINGET":
        return this.push(this.get(this.u32()));
      default:
        this.fail(`opcode ${name} is not one a tensor state dict uses; the pickle is refused (nothing was run)`);
    }
  }

  private global(name: string): KnownGlobal {
    if (!isAllowedGlobal(name)) {
      this.fail(
        `global '${printable(name, 120)}' is not one a tensor state dict uses (those are collections.OrderedDict, torch._utils._rebuild_tensor_v2 and torch storage and dtype names); the pickle is refused (nothing was run)`,
      );
    }
    return { kind: "global", name };
  }

  private reduce(callable: PickleValue, args: PickleValue): PickleValue {
    if (!isGlobal(callable) || !CALLABLES.has(callable.name))
      this.fail(`REDUCE on ${describe(callable)}; only collections.OrderedDict and torch's tensor rebuild functions are applied`);
    if (!Array.isArray(args)) this.fail(`REDUCE arguments to ${callable.name} are ${describe(args)}; expected a tuple`);
    switch (callable.name) {
      case "collections.OrderedDict":
        return args.length === 0
          ? new Map()
          : this.pairs(
              new Map(),
              (this.list(args[0]) as PickleValue[]).flatMap((pair) => this.list(pair)),
            );
      case "torch._utils._rebuild_tensor_v2":
        return this.tensor(args, undefined);
      case "torch._utils._rebuild_tensor_v3":
        return this.tensor(args, this.dtypeArg(args[6]));
      case "torch._utils._rebuild_parameter":
      case "torch._utils._rebuild_parameter_with_state":
        return this.tensorArg(args[0], callable.name);
      case "torch._tensor._rebuild_from_type_v2": {
        const [func, type, innerArgs] = args;
        if (!isGlobal(type) || !TYPE_GLOBALS.has(type.name))
          this.fail(`_rebuild_from_type_v2 with type ${describe(type ?? null)}; expected torch.Tensor or torch.nn.parameter.Parameter`);
        return this.reduce(func ?? null, innerArgs ?? null);
      }
      default:
        this.fail(`REDUCE on ${callable.name}`);
    }
  }

  private tensor(args: PickleValue[], dtype: string | undefined): PickledTensor {
    const [storage, offset, size, stride] = args;
    if (!isStorage(storage)) this.fail(`_rebuild_tensor's storage is ${describe(storage ?? null)}; expected a persistent storage`);
    const count = (value: PickleValue | undefined, what: string): number => {
      if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0)
        this.fail(`tensor ${what} is ${describe(value ?? null)}; expected a non-negative integer`);
      return value;
    };
    const counts = (value: PickleValue | undefined, what: string): number[] => {
      if (!Array.isArray(value)) this.fail(`tensor ${what} is ${describe(value ?? null)}; expected a tuple of integers`);
      return value.map((v, i) => count(v, `${what}[${i}]`));
    };
    const shape = counts(size, "size");
    const strides = counts(stride, "stride");
    if (strides.length !== shape.length) this.fail(`tensor size has ${shape.length} dimensions but stride ${strides.length}`);
    return {
      kind: "tensor",
      storage,
      storageOffset: count(offset, "storage offset"),
      shape,
      stride: strides,
      ...(dtype !== undefined ? { dtype } : {}),
    };
  }

  private dtypeArg(value: PickleValue | undefined): string {
    if (!isGlobal(value ?? null) || !((value as KnownGlobal).name in TORCH_DTYPES))
      this.fail(`_rebuild_tensor_v3 dtype is ${describe(value ?? null)}; expected a torch dtype`);
    return TORCH_DTYPES[(value as KnownGlobal).name];
  }

  private tensorArg(value: PickleValue | undefined, from: string): PickledTensor {
    if (value === undefined || value === null || typeof value !== "object" || !("kind" in value) || value.kind !== "tensor")
      this.fail(`${from} of ${describe(value ?? null)}; expected a tensor`);
    return value;
  }

  /** BUILD sets an object's state: allowed only on a dict (OrderedDict's _metadata) or a tensor (its Python attributes), and ignored. */
  private build(target: PickleValue, state: PickleValue): void {
    if (target instanceof Map || (isObject(target) && target.kind === "tensor")) return;
    this.fail(`BUILD on ${describe(target)} with state ${describe(state)}; a tensor state dict sets state only on dicts and tensors`);
  }

  private pairs(map: Map<PickleValue, PickleValue>, items: PickleValue[]): Map<PickleValue, PickleValue> {
    if (items.length % 2 !== 0) this.fail(`${items.length} items for a dict; expected key, value pairs`);
    for (let i = 0; i < items.length; i += 2) map.set(items[i], items[i + 1]);
    return map;
  }

  private list(value: PickleValue): PickleValue[] {
    if (!Array.isArray(value)) this.fail(`expected a list or tuple, found ${describe(value)}`);
    return value;
  }

  private dict(value: PickleValue): Map<PickleValue, PickleValue> {
    if (!(value instanceof Map)) this.fail(`expected a dict, found ${describe(value)}`);
    return value;
  }

  private push(value: PickleValue): false {
    this.stack.push(value);
    return false;
  }

  private pop(): PickleValue {
    const mark = this.marks.length > 0 ? this.marks[this.marks.length - 1] : 0;
    if (this.stack.length <= mark) this.fail("pops an empty stack; the pickle is malformed");
    return this.stack.pop() as PickleValue;
  }

  private top(): PickleValue {
    if (this.stack.length === 0) this.fail("reads an empty stack; the pickle is malformed");
    return this.stack[this.stack.length - 1] as PickleValue;
  }

  private popMark(): PickleValue[] {
    const mark = this.marks.pop();
    if (mark === undefined) this.fail("no MARK to pop to; the pickle is malformed");
    return this.stack.splice(mark) as PickleValue[];
  }

  private put(index: number): false {
    if (this.memo.size >= MAX_MEMO && !this.memo.has(index)) this.fail(`memo of more than ${MAX_MEMO} values; refusing`);
    this.memo.set(index, this.top());
    return false;
  }

  private get(index: number): PickleValue {
    const value = this.memo.get(index);
    if (value === undefined) this.fail(`memo index ${index} was never stored; the pickle is malformed`);
    return value;
  }

  private advance(length: number): number {
    if (this.position + length > this.bytes.length)
      this.fail(`an argument of ${length} bytes runs past the end of the pickle (${this.bytes.length} bytes); it is truncated`);
    const at = this.position;
    this.position += length;
    return at;
  }

  private take(length: number): Uint8Array {
    const at = this.advance(length);
    return this.bytes.subarray(at, at + length);
  }

  private u8(): number {
    return this.bytes[this.advance(1)];
  }

  private u32(): number {
    return this.view.getUint32(this.advance(4), true);
  }

  private u64(): number {
    const value = this.view.getBigUint64(this.advance(8), true);
    if (value > BigInt(this.bytes.length))
      this.fail(`a length of ${value} bytes in a pickle of ${this.bytes.length}; it is truncated or damaged`);
    return Number(value);
  }

  /** A little-endian two's-complement integer of `length` bytes. */
  private long(length: number): number | bigint {
    const bytes = this.take(length);
    let value = 0n;
    for (let i = length - 1; i >= 0; i--) value = (value << 8n) | BigInt(bytes[i]);
    if (length > 0 && bytes[length - 1] >= 0x80) value -= 1n << BigInt(8 * length);
    return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
  }

  private textInt(text: string): number | boolean {
    if (text === "01") return true;
    if (text === "00") return false;
    if (!/^-?\d{1,15}$/.test(text)) this.fail(`integer '${printable(text, 40)}' is not a number this reader accepts`);
    return Number(text);
  }

  private line(): string {
    const end = this.bytes.indexOf(0x0a, this.position);
    if (end < 0 || end - this.position > 4096) this.fail("a text argument without its newline; the pickle is truncated or damaged");
    const text = new TextDecoder("latin1").decode(this.bytes.subarray(this.position, end));
    this.position = end + 1;
    return text;
  }

  private utf8(length: number): string {
    return new TextDecoder().decode(this.take(length));
  }

  private latin1(length: number): string {
    return new TextDecoder("latin1").decode(this.take(length));
  }
}

function isObject(value: PickleValue): value is PickledStorage | PickledTensor | KnownGlobal {
  return typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Map) && !(value instanceof Uint8Array);
}

function isGlobal(value: PickleValue): value is KnownGlobal {
  return isObject(value) && value.kind === "global";
}

export function isStorage(value: PickleValue): value is PickledStorage {
  return isObject(value) && value.kind === "storage";
}

export function isTensor(value: PickleValue): value is PickledTensor {
  return isObject(value) && value.kind === "tensor";
}

/** A short description of a value for a message. */
function describe(value: PickleValue): string {
  if (value === null) return "None";
  if (Array.isArray(value)) return `a tuple of ${value.length}`;
  if (value instanceof Map) return "a dict";
  if (value instanceof Uint8Array) return `${value.length} bytes`;
  if (typeof value === "string") return `'${printable(value, 60)}'`;
  if (typeof value !== "object") return String(value);
  if (value.kind === "global") return `global ${value.name}`;
  return `a ${value.kind}`;
}

/** The storage type global named in a persistent id, as a dtype (undefined for an untyped storage). */
export function storageDtype(value: PickleValue): string | undefined | null {
  if (!isGlobal(value)) return null;
  if (value.name in STORAGE_DTYPES) return STORAGE_DTYPES[value.name];
  return value.name.endsWith("UntypedStorage") ? undefined : null;
}
