#if FUZZING
import Foundation

/// The target libFuzzer runs, from `RAFTKUBE_FUZZ_TARGET`, read once.
let selectedTarget: FuzzTarget = {
    let name = ProcessInfo.processInfo.environment["RAFTKUBE_FUZZ_TARGET"] ?? ""
    guard let target = FuzzTarget(rawValue: name) else {
        let names = FuzzTarget.allCases.map(\.rawValue).joined(separator: ", ")
        FileHandle.standardError.write(Data("set RAFTKUBE_FUZZ_TARGET to one of: \(names)\n".utf8))
        exit(2)
    }
    return target
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    selectedTarget.run(Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}

/// Fills the corpus directory (the first argument that is not a flag) with the target's seeds
/// when it is empty, so that a fresh run (as in CI) starts from valid inputs.
func writeSeedsIfEmpty(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) {
    guard let argv else { return }
    let arguments = (1..<Int(argc)).compactMap { argv[$0].map { String(cString: $0) } }
    guard let directory = arguments.first(where: { !$0.hasPrefix("-") }),
          let contents = try? FileManager.default.contentsOfDirectory(atPath: directory), contents.isEmpty
    else { return }
    for (number, seed) in selectedTarget.seeds.enumerated() {
        FileManager.default.createFile(atPath: "\(directory)/seed-\(number)", contents: Data(seed))
    }
}

/// libFuzzer's driver, for executables that have a `main` of their own.
@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

/// SwiftPM links executables on Linux with `main` defined as `<target>_main` (so that tests can
/// link them), which hides libFuzzer's `main`: this is that entry point, and it runs libFuzzer.
@_cdecl("raftkube_fuzz_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    writeSeedsIfEmpty(argc, argv)
    var count = argc
    var arguments = argv
    return runFuzzerDriver(&count, &arguments) { data, size in fuzzOneInput(data, size) }
}
#else
import Foundation

/// Replays saved inputs: `raftkube-fuzz TARGET FILE...` (a crash reproduces as a trap).
@main
struct FuzzReplay {
    static func main() throws {
        let arguments = CommandLine.arguments.dropFirst()
        guard let name = arguments.first, let target = FuzzTarget(rawValue: name) else {
            let names = FuzzTarget.allCases.map(\.rawValue).joined(separator: "|")
            print("usage: raftkube-fuzz \(names) FILE...")
            exit(2)
        }
        for path in arguments.dropFirst() {
            let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
            target.run(bytes)
            print("\(path): ok")
        }
    }
}
#endif
