import * as F from "../../assembly/format.ts";
import { crc32 } from "../crc32.ts";
import { encodeHeader, type BlobHeader } from "./header.ts";

export interface SectionBytes {
  id: number;
  bytes: Uint8Array;
}

function alignUp(value: number, alignment: number): number {
  return Math.ceil(value / alignment) * alignment;
}

/**
 * Lays out a complete blob: header, section table, then each section on a 64-byte boundary with
 * zero padding between, CRC-32 of every section and of the header + table. The file ends at the
 * end of the last section. Sections are written in the order given.
 */
export function assembleBlob(header: BlobHeader, sections: readonly SectionBytes[]): Uint8Array {
  const tableEnd = F.SECTION_TABLE_OFFSET + sections.length * F.SECTION_ENTRY_BYTES;
  const offsets: number[] = [];
  let cursor = tableEnd;
  for (const section of sections) {
    cursor = alignUp(cursor, F.SECTION_ALIGN);
    offsets.push(cursor);
    cursor += section.bytes.length;
  }
  const blob = new Uint8Array(cursor);
  const view = new DataView(blob.buffer);
  blob.set(encodeHeader(header, sections.length), 0);
  sections.forEach((section, i) => {
    const entry = F.SECTION_TABLE_OFFSET + i * F.SECTION_ENTRY_BYTES;
    view.setUint32(entry + F.S_ID, section.id, true);
    view.setUint32(entry + F.S_CRC, crc32(section.bytes), true);
    view.setBigUint64(entry + F.S_OFFSET, BigInt(offsets[i]), true);
    view.setBigUint64(entry + F.S_LENGTH, BigInt(section.bytes.length), true);
    blob.set(section.bytes, offsets[i]);
  });
  view.setUint32(F.H_HEADER_CRC, headerCrc(blob, sections.length), true);
  return blob;
}

/** CRC-32 of header bytes [0, 60) followed by the section table (FORMAT.md, header_crc). */
export function headerCrc(blob: Uint8Array, sectionCount: number): number {
  const covered = new Uint8Array(F.H_HEADER_CRC + sectionCount * F.SECTION_ENTRY_BYTES);
  covered.set(blob.subarray(0, F.H_HEADER_CRC), 0);
  covered.set(blob.subarray(F.SECTION_TABLE_OFFSET, F.SECTION_TABLE_OFFSET + sectionCount * F.SECTION_ENTRY_BYTES), F.H_HEADER_CRC);
  return crc32(covered);
}
