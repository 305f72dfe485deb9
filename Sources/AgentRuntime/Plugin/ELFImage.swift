import Foundation

/// Facts read off an ELF file's headers.
enum ELFImage {
    /// Why `data` cannot be loaded safely, or nil. dlopen maps a library's segments as its
    /// program headers say; a file cut short (half written) would fault the whole process
    /// (SIGBUS) when those pages are touched, so every segment must lie within the file.
    static func problem(_ data: Data) -> String? {
        data.withUnsafeBytes { bytes -> String? in
            guard bytes.count >= 64, bytes[0] == 0x7f, bytes[1] == 0x45, bytes[2] == 0x4c, bytes[3] == 0x46 else {
                return "not an ELF shared library"
            }
            guard bytes[4] == 2, bytes[5] == 1 else { return "not a 64-bit little-endian ELF file" }
            let type = bytes.loadUnaligned(fromByteOffset: 0x10, as: UInt16.self)
            guard type == 3 else { return "an ELF file but not a shared library (type \(type))" }
            let machine = bytes.loadUnaligned(fromByteOffset: 0x12, as: UInt16.self)
            #if arch(x86_64)
            guard machine == 62 else { return "built for another CPU (ELF machine \(machine)), not x86-64" }
            #elseif arch(arm64)
            guard machine == 183 else { return "built for another CPU (ELF machine \(machine)), not AArch64" }
            #endif
            let headerOffset = Int(bytes.loadUnaligned(fromByteOffset: 0x20, as: UInt64.self))
            let headerSize = Int(bytes.loadUnaligned(fromByteOffset: 0x36, as: UInt16.self))
            let headerCount = Int(bytes.loadUnaligned(fromByteOffset: 0x38, as: UInt16.self))
            guard headerSize >= 56, headerCount > 0, headerOffset > 0,
                  headerOffset + headerSize * headerCount <= bytes.count else {
                return "truncated: its program headers lie past the end of the file (\(bytes.count) bytes; half written?)"
            }
            for index in 0..<headerCount {
                let header = headerOffset + index * headerSize
                guard bytes.loadUnaligned(fromByteOffset: header, as: UInt32.self) == 1 else { continue }  // PT_LOAD
                let offset = bytes.loadUnaligned(fromByteOffset: header + 0x08, as: UInt64.self)
                let size = bytes.loadUnaligned(fromByteOffset: header + 0x20, as: UInt64.self)
                guard offset <= UInt64(bytes.count), size <= UInt64(bytes.count) - offset else {
                    return "truncated: a loadable segment ends at byte \(offset + size) but the file has \(bytes.count) bytes (half written?)"
                }
            }
            let sectionOffset = Int(bytes.loadUnaligned(fromByteOffset: 0x28, as: UInt64.self))
            let sectionSize = Int(bytes.loadUnaligned(fromByteOffset: 0x3a, as: UInt16.self))
            let sectionCount = Int(bytes.loadUnaligned(fromByteOffset: 0x3c, as: UInt16.self))
            if sectionOffset != 0 && sectionOffset + sectionSize * sectionCount > bytes.count {
                return "truncated: its section headers lie past the end of the file (\(bytes.count) bytes; half written?)"
            }
            return nil
        }
    }

    /// Whether the image carries Swift metadata sections (`swift5_*`), which the Swift runtime
    /// registers when the image loads and keeps pointers into: such an image must never be
    /// unloaded. A C library linked without Swift's start files has none, even if it lists
    /// libswiftCore.so as needed.
    static func registersWithSwiftRuntime(_ data: Data) -> Bool {
        data.withUnsafeBytes { bytes -> Bool in
            // ELF64 little-endian only (what this runtime runs on); otherwise be safe.
            guard bytes.count >= 64, bytes[4] == 2, bytes[5] == 1 else { return true }
            let sectionOffset = Int(bytes.loadUnaligned(fromByteOffset: 0x28, as: UInt64.self))
            let entrySize = Int(bytes.loadUnaligned(fromByteOffset: 0x3a, as: UInt16.self))
            let count = Int(bytes.loadUnaligned(fromByteOffset: 0x3c, as: UInt16.self))
            let namesIndex = Int(bytes.loadUnaligned(fromByteOffset: 0x3e, as: UInt16.self))
            guard entrySize >= 64, count > 0, namesIndex < count,
                  sectionOffset > 0, sectionOffset + count * entrySize <= bytes.count else { return true }
            let namesHeader = sectionOffset + namesIndex * entrySize
            let namesOffset = Int(bytes.loadUnaligned(fromByteOffset: namesHeader + 0x18, as: UInt64.self))
            let namesSize = Int(bytes.loadUnaligned(fromByteOffset: namesHeader + 0x20, as: UInt64.self))
            guard namesOffset >= 0, namesOffset + namesSize <= bytes.count else { return true }
            let prefix = Array("swift5_".utf8)
            for index in 0..<count {
                let nameOffset = Int(bytes.loadUnaligned(fromByteOffset: sectionOffset + index * entrySize, as: UInt32.self))
                let start = namesOffset + nameOffset
                guard start + prefix.count <= namesOffset + namesSize else { continue }
                if bytes[start..<(start + prefix.count)].elementsEqual(prefix) { return true }
            }
            return false
        }
    }
}
