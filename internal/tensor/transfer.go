package tensor

import (
	"fmt"
	"unsafe"
)

func asBytes[T float32 | int32 | uint16 | uint8](s []T) []byte {
	if len(s) == 0 {
		return nil
	}
	var z T
	return unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), len(s)*int(unsafe.Sizeof(z)))
}

func checkTransfer(op string, b Buffer, want []DType, n int) error {
	ok := false
	for _, d := range want {
		ok = ok || b.DType() == d
	}
	if !ok {
		return fmt.Errorf("tensor: %s: buffer is %v, want %v", op, b.DType(), want)
	}
	if b.Len() != n {
		return fmt.Errorf("tensor: %s: buffer has %d elements, host slice %d", op, b.Len(), n)
	}
	return nil
}

// UploadF32 copies src into the F32 buffer dst (len(src) == dst.Len()).
func UploadF32(be Transferer, dst Buffer, src []float32) error {
	if err := checkTransfer("UploadF32", dst, []DType{F32}, len(src)); err != nil {
		return err
	}
	return be.Upload(dst, asBytes(src))
}

// DownloadF32 copies the F32 buffer src into dst (len(dst) == src.Len()).
func DownloadF32(be Transferer, dst []float32, src Buffer) error {
	if err := checkTransfer("DownloadF32", src, []DType{F32}, len(dst)); err != nil {
		return err
	}
	return be.Download(asBytes(dst), src)
}

// UploadI32 copies src into the I32 buffer dst.
func UploadI32(be Transferer, dst Buffer, src []int32) error {
	if err := checkTransfer("UploadI32", dst, []DType{I32}, len(src)); err != nil {
		return err
	}
	return be.Upload(dst, asBytes(src))
}

// DownloadI32 copies the I32 buffer src into dst.
func DownloadI32(be Transferer, dst []int32, src Buffer) error {
	if err := checkTransfer("DownloadI32", src, []DType{I32}, len(dst)); err != nil {
		return err
	}
	return be.Download(asBytes(dst), src)
}

// UploadU16 copies raw 16-bit values (BF16 or F16 bit patterns) into dst.
func UploadU16(be Transferer, dst Buffer, src []uint16) error {
	if err := checkTransfer("UploadU16", dst, []DType{BF16, F16}, len(src)); err != nil {
		return err
	}
	return be.Upload(dst, asBytes(src))
}

// DownloadU16 copies a BF16 or F16 buffer's bit patterns into dst.
func DownloadU16(be Transferer, dst []uint16, src Buffer) error {
	if err := checkTransfer("DownloadU16", src, []DType{BF16, F16}, len(dst)); err != nil {
		return err
	}
	return be.Download(asBytes(dst), src)
}

// UploadBytes copies raw bytes into a buffer of any dtype
// (len(src) == dst.Bytes()).
func UploadBytes(be Transferer, dst Buffer, src []byte) error {
	if dst.IsNil() || len(src) != dst.Bytes() {
		return fmt.Errorf("tensor: UploadBytes: %d bytes into %v", len(src), dst)
	}
	return be.Upload(dst, src)
}

// DownloadBytes copies a buffer's raw bytes into dst (len(dst) == src.Bytes()).
func DownloadBytes(be Transferer, dst []byte, src Buffer) error {
	if src.IsNil() || len(dst) != src.Bytes() {
		return fmt.Errorf("tensor: DownloadBytes: %v into %d bytes", src, len(dst))
	}
	return be.Download(dst, src)
}
