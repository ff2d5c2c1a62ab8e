/**
 * A FIFO for the `poll*()` outputs of the sans-IO cores: push while handling input, then poll
 * until empty. Polling never shifts the array, and the storage is reused once drained.
 */
export class DrainQueue<T> {
  private items: (T | undefined)[] = [];
  private head = 0;

  push(item: T): void {
    this.items.push(item);
  }

  poll(): T | undefined {
    if (this.head >= this.items.length) {
      if (this.head > 0) {
        this.items.length = 0;
        this.head = 0;
      }
      return undefined;
    }
    const item = this.items[this.head];
    this.items[this.head++] = undefined; // let the consumer own it alone
    return item;
  }

  get length(): number {
    return this.items.length - this.head;
  }
}
